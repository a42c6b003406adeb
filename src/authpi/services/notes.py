"""Account notes (§C.13): Markdown about a user, client or issuer of the account, with the users it
mentions (``@[Display Name](user_id)``) and the resources it references (``[[type:id]]`` or
``[[type:id|Display Text]]``) parsed out of the content on every write, for filters and backlinks.

Notes are the account's own history: they are recorded in the event log (``note.*``, log-only types
that are never delivered to webhooks) and they outlive their subject.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.services import events, versions
from authpi.services.errors import FieldProblem, InvalidInput, NotFound, ServiceError
from authpi.storage.tables.api_keys import ApiKey
from authpi.storage.tables.clients import Client
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.notes import Note, NoteMention, NoteReference
from authpi.storage.tables.users import User
from authpi.storage.tables.webhooks import Webhook

ID_PREFIX = "note_"
SUBJECT_TYPES = ("user", "org", "issuer", "client", "agent")
# Organizations and agents are not built yet: a note about one cannot be attached to anything.
UNAVAILABLE_SUBJECTS = ("org", "agent")
# Subjects that live inside an issuer, so a list by subject needs the issuer too (§B.3).
ISSUER_SCOPED_SUBJECTS = ("user", "org")
REF_TYPES = ("user", "org", "issuer", "client", "webhook", "api_key")
MAX_CONTENT = 20_000
MAX_MENTIONS = 100
MAX_REFERENCES = 100
# The list order (all descending): pinned notes first, then newest first, the ID breaking ties.
ORDER = (Note.pinned, Note.created_at, Note.id)


# --- parsing ----------------------------------------------------------------------------------------

# Code is quoted text: a mention or reference inside a code span or fenced block is not one.
_CODE = re.compile(r"```.*?```|~~~.*?~~~|`[^`\n]*`", re.DOTALL)
_ID = r"[A-Za-z0-9_-]{1,64}"
_MENTION = re.compile(rf"@\[([^\[\]\n]{{1,200}})\]\(({_ID})\)")
_REFERENCE = re.compile(rf"\[\[({'|'.join(REF_TYPES)}):({_ID})(?:\|([^\[\]|\n]{{1,200}}))?\]\]")


@dataclass(frozen=True)
class Parsed:
    """What a note's content points at, each once, in order of first appearance."""

    mentions: list[str] = field(default_factory=list)
    references: list[tuple[str, str]] = field(default_factory=list)


def parse(content: str) -> Parsed:
    """Mentions and references in ``content``. Anything that does not match the syntax exactly (an
    unknown reference type, an empty display name, a missing bracket) is plain text."""
    text = _CODE.sub(" ", content)
    mentions = [m.group(2) for m in _MENTION.finditer(text) if m.group(1).strip()]
    references = [(m.group(1), m.group(2)) for m in _REFERENCE.finditer(text)]
    parsed = Parsed(list(dict.fromkeys(mentions)), list(dict.fromkeys(references)))
    if len(parsed.mentions) > MAX_MENTIONS:
        raise InvalidInput.on("content", "too_many_mentions", f"At most {MAX_MENTIONS} distinct mentions")
    if len(parsed.references) > MAX_REFERENCES:
        raise InvalidInput.on(
            "content", "too_many_references", f"At most {MAX_REFERENCES} distinct references"
        )
    return parsed


# --- resolving against the account -----------------------------------------------------------------


async def _account_users(session: AsyncSession, account_id: str, user_ids: Sequence[str]) -> dict[str, str]:
    """The given IDs that are users (stored, deleted or not) of the account's issuers → their issuer."""
    if not user_ids:
        return {}
    rows = await session.execute(
        select(User.id, User.issuer_id)
        .join(Issuer, Issuer.id == User.issuer_id)
        .where(Issuer.account_id == account_id, User.id.in_(user_ids))
    )
    return {row.id: row.issuer_id for row in rows}


async def _account_clients(
    session: AsyncSession, account_id: str, client_ids: Sequence[str]
) -> dict[str, str]:
    if not client_ids:
        return {}
    rows = await session.execute(
        select(Client.id, Client.issuer_id)
        .join(Issuer, Issuer.id == Client.issuer_id)
        .where(Issuer.account_id == account_id, Client.id.in_(client_ids))
    )
    return {row.id: row.issuer_id for row in rows}


async def _account_ids(session: AsyncSession, table: Any, account_id: str, wanted: Sequence[str]) -> set[str]:
    if not wanted:
        return set()
    found = await session.scalars(
        select(table.id).where(table.account_id == account_id, table.id.in_(wanted))
    )
    return set(found)


async def _resolve_references(
    session: AsyncSession, account_id: str, references: Sequence[tuple[str, str]]
) -> list[tuple[str, str, str | None]]:
    """The references to resources of this account, with the issuer of users and clients.

    Others (another account's IDs, unknown IDs, organizations, which do not exist yet) stay text:
    recording them would let a note probe for IDs, and they could never be followed."""
    wanted: dict[str, list[str]] = {}
    for ref_type, ref_id in references:
        wanted.setdefault(ref_type, []).append(ref_id)
    issuers_of: dict[str, dict[str, str | None]] = {
        "user": dict(await _account_users(session, account_id, wanted.get("user", []))),
        "client": dict(await _account_clients(session, account_id, wanted.get("client", []))),
    }
    for ref_type, table in (("issuer", Issuer), ("webhook", Webhook), ("api_key", ApiKey)):
        found = await _account_ids(session, table, account_id, wanted.get(ref_type, []))
        issuers_of[ref_type] = dict.fromkeys(found)
    return [
        (ref_type, ref_id, issuers_of[ref_type][ref_id])
        for ref_type, ref_id in references
        if ref_id in issuers_of.get(ref_type, {})
    ]


async def _record_links(session: AsyncSession, note: Note, content: str, now: int) -> None:
    """(Re)writes the note's mentions and references from ``content``. A link the content kept keeps
    its ``created_at``: it records when the note first pointed there."""
    parsed = parse(content)
    before_mentions = {
        m.mentioned_user_id: m.created_at
        for m in await session.scalars(select(NoteMention).where(NoteMention.note_id == note.id))
    }
    before_refs = {
        (r.ref_type, r.ref_id): r.created_at
        for r in await session.scalars(select(NoteReference).where(NoteReference.note_id == note.id))
    }
    await session.execute(delete(NoteMention).where(NoteMention.note_id == note.id))
    await session.execute(delete(NoteReference).where(NoteReference.note_id == note.id))
    users = await _account_users(session, note.account_id, parsed.mentions)
    mentioned = [user_id for user_id in parsed.mentions if user_id in users]
    for position, user_id in enumerate(mentioned):
        session.add(
            NoteMention(
                note_id=note.id,
                mentioned_user_id=user_id,
                account_id=note.account_id,
                position=position,
                created_at=before_mentions.get(user_id, now),
            )
        )
    resolved = await _resolve_references(session, note.account_id, parsed.references)
    for position, (ref_type, ref_id, ref_issuer_id) in enumerate(resolved):
        session.add(
            NoteReference(
                note_id=note.id,
                ref_type=ref_type,
                ref_id=ref_id,
                ref_issuer_id=ref_issuer_id,
                account_id=note.account_id,
                position=position,
                created_at=before_refs.get((ref_type, ref_id), now),
            )
        )


# --- subjects ---------------------------------------------------------------------------------------


def _bad_request(field_name: str, code: str, message: str) -> ServiceError:
    return ServiceError(message, fields=[FieldProblem(field_name, code, message)])


async def _subject_issuer(
    session: AsyncSession, account_id: str, subject_type: str, subject_id: str, issuer_id: str | None
) -> str:
    """The issuer of an existing subject of this account (404 otherwise, whoever owns the ID)."""
    if subject_type in UNAVAILABLE_SUBJECTS:
        raise _bad_request(
            "subject_type",
            "unavailable",
            f"Notes about subject_type '{subject_type}' are not available: this server has no "
            f"{'organizations' if subject_type == 'org' else 'agents'} yet",
        )
    if subject_type == "issuer":
        if issuer_id is not None and issuer_id != subject_id:
            raise _bad_request(
                "issuer_id", "mismatch", "issuer_id must be the subject_id for an issuer subject"
            )
        where = (Issuer.id == subject_id, Issuer.account_id == account_id, Issuer.status != "deleted")
        if await session.scalar(select(Issuer.id).where(*where)) is None:
            raise NotFound("Issuer")
        return subject_id
    if subject_type == "user":
        if issuer_id is None:
            raise _bad_request("issuer_id", "required", "issuer_id is required for a user subject")
        found = await session.scalar(
            select(User.issuer_id)
            .join(Issuer, Issuer.id == User.issuer_id)
            .where(
                User.id == subject_id,
                User.issuer_id == issuer_id,
                User.status != "deleted",
                Issuer.account_id == account_id,
                Issuer.status != "deleted",
            )
        )
        if found is None:
            raise NotFound("User")
        return found
    # A client ID names its issuer; issuer_id is optional and must then agree.
    stmt = (
        select(Client.issuer_id)
        .join(Issuer, Issuer.id == Client.issuer_id)
        .where(
            Client.id == subject_id,
            Client.status != "deleted",
            Issuer.account_id == account_id,
            Issuer.status != "deleted",
        )
    )
    if issuer_id is not None:
        stmt = stmt.where(Client.issuer_id == issuer_id)
    client_issuer = await session.scalar(stmt)
    if client_issuer is None:
        raise NotFound("Client")
    return client_issuer


# --- reading ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteView:
    """A note with its parsed links, as the API shows it."""

    note: Note
    mentions: list[NoteMention]
    references: list[NoteReference]


async def with_links(session: AsyncSession, notes: Sequence[Note]) -> list[NoteView]:
    """``notes`` with their mentions and references (two queries for any number of notes)."""
    note_ids = [note.id for note in notes]
    mentions: dict[str, list[NoteMention]] = {note_id: [] for note_id in note_ids}
    references: dict[str, list[NoteReference]] = {note_id: [] for note_id in note_ids}
    if note_ids:
        for mention in await session.scalars(
            select(NoteMention).where(NoteMention.note_id.in_(note_ids)).order_by(NoteMention.position)
        ):
            mentions[mention.note_id].append(mention)
        for reference in await session.scalars(
            select(NoteReference).where(NoteReference.note_id.in_(note_ids)).order_by(NoteReference.position)
        ):
            references[reference.note_id].append(reference)
    return [NoteView(note, mentions[note.id], references[note.id]) for note in notes]


async def _get(session: AsyncSession, account_id: str, note_id: str, *, for_update: bool = False) -> Note:
    stmt = select(Note).where(Note.id == note_id, Note.account_id == account_id)
    if for_update:
        stmt = versions.for_update(stmt)
    note = await session.scalar(stmt)
    if note is None:
        raise NotFound("Note")
    return note


async def get_note(session: AsyncSession, account_id: str, note_id: str) -> NoteView:
    [view] = await with_links(session, [await _get(session, account_id, note_id)])
    return view


@dataclass(frozen=True)
class Filters:
    subject_type: str | None = None
    subject_id: str | None = None
    issuer_id: str | None = None
    created_by: str | None = None
    pinned: bool | None = None
    mentions_user_id: str | None = None


def _where(account_id: str, f: Filters) -> list[ColumnElement[bool]]:
    if f.subject_id is not None and f.subject_type is None:
        raise _bad_request("subject_type", "required", "subject_id requires subject_type")
    if f.subject_type in ISSUER_SCOPED_SUBJECTS and f.issuer_id is None:
        raise _bad_request("issuer_id", "required", f"issuer_id is required for {f.subject_type} subjects")
    clauses: list[ColumnElement[bool]] = [Note.account_id == account_id]
    for column, value in (
        (Note.subject_type, f.subject_type),
        (Note.subject_id, f.subject_id),
        (Note.issuer_id, f.issuer_id),
        (Note.created_by, f.created_by),
        (Note.pinned, f.pinned),
    ):
        if value is not None:
            clauses.append(column == value)
    if f.mentions_user_id is not None:
        mentioning = select(NoteMention.note_id).where(
            NoteMention.account_id == account_id, NoteMention.mentioned_user_id == f.mentions_user_id
        )
        clauses.append(Note.id.in_(mentioning))
    return clauses


def list_statement(account_id: str, f: Filters) -> Select[Any]:
    """Notes matching ``f``; paged by the caller in ``ORDER`` (see ``after_cursor``)."""
    return select(Note).where(*_where(account_id, f))


def cursor_of(note: Note) -> str:
    """The documented ``pinned:timestamp`` cursor, plus the note ID: notes created in the same
    millisecond would otherwise be skipped or repeated at a page boundary."""
    return f"{int(note.pinned)}:{note.created_at}:{note.id}"


def after_cursor(cursor: str | None) -> tuple[Any, ...] | None:
    """The position (a prefix of ``ORDER``'s values) a cursor points after; ``pinned:timestamp``
    alone is accepted too."""
    if not cursor:
        return None
    parts = cursor.split(":", 2)
    pinned = {"1": True, "true": True, "0": False, "false": False}.get(parts[0])
    try:
        created_at = int(parts[1]) if len(parts) > 1 else None
    except ValueError:
        created_at = None
    if (
        pinned is None
        or created_at is None
        or not 0 <= created_at < 2**63
        or (len(parts) > 2 and not parts[2])
    ):
        raise _bad_request("cursor", "invalid_cursor", "cursor must be a next_cursor from a previous page")
    return (pinned, created_at, *parts[2:])


async def backlinks(
    session: AsyncSession, account_id: str, ref_type: str, ref_id: str, limit: int
) -> list[NoteView]:
    """The notes that reference ``ref_type:ref_id``, in list order."""
    referencing = select(NoteReference.note_id).where(
        NoteReference.account_id == account_id,
        NoteReference.ref_type == ref_type,
        NoteReference.ref_id == ref_id,
    )
    stmt = (
        select(Note)
        .where(Note.account_id == account_id, Note.id.in_(referencing))
        .order_by(*(column.desc() for column in ORDER))
        .limit(limit)
    )
    return await with_links(session, list(await session.scalars(stmt)))


async def count(session: AsyncSession, account_id: str, subject_type: str, subject_id: str) -> int:
    found = await session.scalar(
        select(func.count())
        .select_from(Note)
        .where(
            Note.account_id == account_id, Note.subject_type == subject_type, Note.subject_id == subject_id
        )
    )
    return int(found or 0)


# --- writing ----------------------------------------------------------------------------------------


def _event_data(note: Note, *, with_content: bool = True) -> dict[str, Any]:
    data = events.snapshot(note)
    if not with_content:  # a deleted note's text goes with it, not into the log for 90 days
        data.pop("content", None)
    return data


async def _emit(session: AsyncSession, type_: str, note: Note, *, with_content: bool = True) -> None:
    await events.emit_for(
        session,
        type_,
        note,
        "note",
        data=_event_data(note, with_content=with_content),
        account_id=note.account_id,
        issuer_id=note.issuer_id,
        user_id=note.subject_id if note.subject_type == "user" else None,
        client_id=note.subject_id if note.subject_type == "client" else None,
    )


async def create_note(
    session: AsyncSession,
    account_id: str,
    actor_id: str,
    *,
    subject_type: str,
    subject_id: str,
    content: str,
    issuer_id: str | None = None,
    pinned: bool | None = None,
) -> NoteView:
    subject_issuer = await _subject_issuer(session, account_id, subject_type, subject_id, issuer_id)
    now = now_ms()
    note = Note(
        id=ids.time_ordered(ID_PREFIX),
        account_id=account_id,
        issuer_id=subject_issuer,
        subject_type=subject_type,
        subject_id=subject_id,
        content=content,
        pinned=bool(pinned),
        created_by=actor_id,
        updated_by=None,
        created_at=now,
        updated_at=now,
    )
    session.add(note)
    await session.flush()
    await _record_links(session, note, content, now)
    await session.flush()
    await _emit(session, "note.created", note)
    [view] = await with_links(session, [note])
    return view


async def update_note(
    session: AsyncSession,
    account_id: str,
    note_id: str,
    changes: dict[str, Any],
    if_match: str | None,
    actor_id: str,
) -> NoteView:
    """PATCH: ``content`` and ``pinned``; ``pinned: null`` leaves it as it is, ``content: null`` is
    refused (a note always has content)."""
    if "content" in changes and changes["content"] is None:
        raise InvalidInput.on("content", "required", "content cannot be null")
    note = await _get(session, account_id, note_id, for_update=True)
    await versions.claim(session, note, "Note", if_match)
    if changes.get("content") is not None:
        note.content = changes["content"]
        await _record_links(session, note, note.content, note.updated_at)
    if changes.get("pinned") is not None:
        note.pinned = bool(changes["pinned"])
    note.updated_by = actor_id
    await session.flush()
    await _emit(session, "note.updated", note)
    [view] = await with_links(session, [note])
    return view


async def delete_note(session: AsyncSession, account_id: str, note_id: str, if_match: str | None) -> None:
    note = await _get(session, account_id, note_id, for_update=True)
    await versions.claim(session, note, "Note", if_match)
    await _emit(session, "note.deleted", note, with_content=False)
    await session.delete(note)
    await session.flush()
