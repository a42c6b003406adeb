"""Organizations of an issuer (core-api §C.9) and their members and groups.

A member's effective scopes are the de-duplicated union of the membership's own scopes and those
of its groups (idp-api §F.14), in that order; every place that evaluates a member's scopes (the
``organizations`` claim, the member list's ``scope`` filter) uses ``effective_scopes``.

``max_members`` holds under concurrency because adding a member first moves the organization's
``member_count`` with one guarded ``UPDATE … WHERE member_count < max_members``: of many adds at
once, only as many succeed as there are places, whatever the interleaving. Removing a member moves
it back in the same transaction.

Deleting an organization marks it ``deleting`` (it leaves tokens and the API at once); housekeeping
then removes it with its memberships, groups, invitations and keys.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Exists, Select, Text, cast, delete, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto.secretbox import SecretBox
from authpi.services import events, sso_connections, versions
from authpi.services.clients import scope_names
from authpi.services.errors import Conflict, InvalidInput, NotFound
from authpi.storage.tables.organizations import (
    Group,
    MemberRemoval,
    Membership,
    MembershipGroup,
    Organization,
)
from authpi.storage.tables.users import User

STATUSES = ("active", "suspended", "deleting")
SETTABLE = ("active", "suspended")
MEMBER_STATUSES = ("active", "suspended")
MAX_GROUPS_PER_MEMBER = 50
_PLAIN_FIELDS = (
    "name",
    "description",
    "logo_url",
    "org_type",
    "invitation_message",
    "address",
    "business_details",
    "contact",
    "social_links",
    "custom_fields",
)


# --- organizations ---------------------------------------------------------------------------------


def _derive_flags(org: Organization) -> None:
    """The list filters' columns, from the free-form objects they summarise."""
    sso = org.sso or {}
    security = org.security or {}
    org.sso_enabled = sso.get("enabled") is True
    org.sso_only = org.sso_enabled and sso.get("sso_only") is True
    org.mfa_required = org.settings.get("enforce_2fa") is True or security.get("mfa_required") is True


def _settings(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    unknown = sorted(set(value) - {"enforce_2fa"})
    if unknown:
        raise InvalidInput.on(f"settings.{unknown[0]}", "unknown_field", f"Unknown setting {unknown[0]}")
    if "enforce_2fa" in value and not isinstance(value["enforce_2fa"], bool):
        raise InvalidInput.on("settings.enforce_2fa", "invalid_type", "enforce_2fa must be a boolean")
    return dict(value)


def _apply(org: Organization, body: dict[str, Any], box: SecretBox) -> None:
    if "sso" in body:
        org.sso = sso_connections.merged(box, org, body["sso"])
    for field in _PLAIN_FIELDS:
        if field in body:
            setattr(org, field, body[field])
    if org.org_type is None:  # a null org_type means the default
        org.org_type = "business"
    if "max_members" in body:
        org.max_members = body["max_members"]
    for field in ("default_member_scopes", "scopes"):
        if field in body:
            value = body[field]
            setattr(org, field, scope_names(field, value) if value is not None else None)
    if "invitation_enabled" in body:
        org.invitation_enabled = body["invitation_enabled"] is not False
    if "security" in body:
        org.security = body["security"]
    if "settings" in body:
        org.settings = {**org.settings, **_settings(body["settings"])}
    if "metadata" in body:
        org.metadata_ = body["metadata"] or {}
    _derive_flags(org)


async def _emit(session: AsyncSession, kind: str, org: Organization, **data: Any) -> None:
    await events.emit_for(
        session,
        kind,
        org,
        "organization",
        data={**events.snapshot(org), **data} if data else None,
        issuer_id=org.issuer_id,
    )


async def create(session: AsyncSession, box: SecretBox, issuer_id: str, body: dict[str, Any]) -> Organization:
    now = now_ms()
    org = Organization(
        id=ids.organization_id(),
        issuer_id=issuer_id,
        org_type="business",
        status="active",
        status_at=now,
        member_count=0,
        invitation_enabled=True,
        settings={},
        metadata_={},
        created_at=now,
        updated_at=now,
    )
    _apply(org, body, box)
    session.add(org)
    await session.flush()
    await _emit(session, "organization.created", org)
    await sso_connections.emit_changes(session, org, None, None)
    return org


def list_statement(issuer_id: str, status: str | None, flags: dict[str, bool | None]) -> Select[Any]:
    stmt = select(Organization).where(Organization.issuer_id == issuer_id)
    stmt = (
        stmt.where(Organization.status == status) if status else stmt.where(Organization.status != "deleting")
    )
    for name, value in flags.items():
        if value is not None:
            stmt = stmt.where(getattr(Organization, name).is_(value))
    return stmt


async def get(
    session: AsyncSession, issuer_id: str, org_id: str, *, for_update: bool = False
) -> Organization:
    stmt = select(Organization).where(
        Organization.id == org_id, Organization.issuer_id == issuer_id, Organization.status != "deleting"
    )
    if for_update:
        stmt = versions.for_update(stmt)
    org = await session.scalar(stmt)
    if org is None:
        raise NotFound("Organization")
    return org


_STATUS_EVENTS = {
    ("active", "suspended"): "organization.suspended",
    ("suspended", "active"): "organization.reactivated",
}


async def update_org(
    session: AsyncSession,
    box: SecretBox,
    issuer_id: str,
    org_id: str,
    changes: dict[str, Any],
    if_match: str | None,
) -> Organization:
    org = await get(session, issuer_id, org_id, for_update=True)
    await versions.claim(session, org, "Organization", if_match)
    before = org.status
    sso_before, secret_before = org.sso, org.sso_secret_sealed
    _apply(org, changes, box)
    if changes.get("status") and changes["status"] != org.status:
        org.status = changes["status"]
        org.status_at = now_ms()
        org.status_reason = changes.get("status_reason")
        org.status_by = changes.get("status_by")
    else:
        for field in ("status_reason", "status_by"):
            if field in changes:
                setattr(org, field, changes[field])
    await session.flush()
    await _emit(session, _STATUS_EVENTS.get((before, org.status), "organization.updated"), org)
    await sso_connections.emit_changes(session, org, sso_before, secret_before)
    return org


async def delete_org(session: AsyncSession, issuer_id: str, org_id: str, if_match: str | None) -> None:
    org = await get(session, issuer_id, org_id, for_update=True)
    await versions.claim(session, org, "Organization", if_match)
    org.status = "deleting"
    org.status_at = now_ms()
    await session.flush()
    await _emit(session, "organization.deleted", org)


def stats(org: Organization) -> dict[str, Any]:
    return {"n_members": org.member_count}


# --- groups ----------------------------------------------------------------------------------------


async def _group_emit(session: AsyncSession, kind: str, group: Group) -> None:
    await events.emit_for(session, kind, group, "organization_group", issuer_id=group.issuer_id)


async def _flush_unique(session: AsyncSession, message: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(message) from exc


async def create_group(session: AsyncSession, org: Organization, body: dict[str, Any]) -> Group:
    now = now_ms()
    group = Group(
        id=ids.group_id(),
        org_id=org.id,
        issuer_id=org.issuer_id,
        name=body["name"],
        description=body.get("description"),
        scopes=scope_names("scopes", body.get("scopes")),
        metadata_=body.get("metadata") or {},
        created_at=now,
        updated_at=now,
    )
    taken = await session.scalar(select(Group.id).where(Group.org_id == org.id, Group.name == group.name))
    if taken:
        raise Conflict("A group with this name already exists in this organization")
    session.add(group)
    await _flush_unique(session, "A group with this name already exists in this organization")
    await _group_emit(session, "organization.group.created", group)
    return group


def groups_statement(org_id: str) -> Select[Any]:
    return select(Group).where(Group.org_id == org_id)


async def get_group(session: AsyncSession, org_id: str, group_id: str, *, for_update: bool = False) -> Group:
    stmt = select(Group).where(Group.id == group_id, Group.org_id == org_id)
    group = await session.scalar(versions.for_update(stmt) if for_update else stmt)
    if group is None:
        raise NotFound("Group")
    return group


async def update_group(
    session: AsyncSession, org_id: str, group_id: str, changes: dict[str, Any], if_match: str | None
) -> Group:
    group = await get_group(session, org_id, group_id, for_update=True)
    await versions.claim(session, group, "Group", if_match)
    if changes.get("name") is not None:
        group.name = changes["name"]
    if "description" in changes:
        group.description = changes["description"]
    if "scopes" in changes:
        group.scopes = scope_names("scopes", changes["scopes"])
    if "metadata" in changes:
        group.metadata_ = changes["metadata"] or {}
    await _flush_unique(session, "A group with this name already exists in this organization")
    await _group_emit(session, "organization.group.updated", group)
    return group


async def delete_group(session: AsyncSession, org_id: str, group_id: str, if_match: str | None) -> None:
    group = await get_group(session, org_id, group_id, for_update=True)
    await versions.claim(session, group, "Group", if_match)
    await _group_emit(session, "organization.group.deleted", group)
    await session.execute(delete(MembershipGroup).where(MembershipGroup.group_id == group.id))
    await session.delete(group)
    await session.flush()


# --- members ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A membership with its group IDs (in the order they were given) and effective scopes."""

    row: Membership
    group_ids: list[str]
    group_scopes: list[str]

    @property
    def effective_scopes(self) -> list[str]:
        return effective_scopes(self.row.scopes, self.group_scopes)


def effective_scopes(own: Iterable[str], from_groups: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([*own, *from_groups]))


async def _groups_of(session: AsyncSession, membership_ids: Sequence[str]) -> dict[str, list[Group]]:
    found: dict[str, list[Group]] = defaultdict(list)
    if not membership_ids:
        return found
    rows = await session.execute(
        select(MembershipGroup.membership_id, Group)
        .join(Group, Group.id == MembershipGroup.group_id)
        .where(MembershipGroup.membership_id.in_(membership_ids))
        .order_by(Group.id)
    )
    for membership_id, group in rows.all():
        found[membership_id].append(group)
    return found


async def members_of(session: AsyncSession, rows: Sequence[Membership]) -> list[Member]:
    groups = await _groups_of(session, [row.id for row in rows])
    return [
        Member(
            row,
            [g.id for g in groups[row.id]],
            [s for g in groups[row.id] for s in g.scopes],
        )
        for row in rows
    ]


async def _check_groups(session: AsyncSession, org_id: str, group_ids: Any) -> list[str]:
    if not isinstance(group_ids, list) or not all(isinstance(g, str) for g in group_ids):
        raise InvalidInput.on("groups", "invalid_type", "groups must be a list of group IDs")
    wanted = list(dict.fromkeys(group_ids))
    if len(wanted) > MAX_GROUPS_PER_MEMBER:
        raise InvalidInput.on(
            "groups", "too_many", f"A member can be in at most {MAX_GROUPS_PER_MEMBER} groups"
        )
    if not wanted:
        return []
    known = set(
        (await session.scalars(select(Group.id).where(Group.org_id == org_id, Group.id.in_(wanted)))).all()
    )
    missing = [g for g in wanted if g not in known]
    if missing:
        raise InvalidInput.on("groups", "not_found", f"No group {missing[0]} in this organization")
    return wanted


async def _set_groups(session: AsyncSession, membership_id: str, group_ids: list[str]) -> None:
    await session.execute(delete(MembershipGroup).where(MembershipGroup.membership_id == membership_id))
    for group_id in group_ids:
        session.add(MembershipGroup(membership_id=membership_id, group_id=group_id))


async def _member_emit(session: AsyncSession, kind: str, member: Membership) -> None:
    await events.emit_for(
        session,
        kind,
        member,
        "organization_membership",
        issuer_id=member.issuer_id,
        user_id=member.member_id if member.member_type == "user" else None,
    )


async def take_place(session: AsyncSession, org_id: str) -> bool:
    """One more member in ``org_id`` if it has room (one guarded UPDATE: safe under concurrency)."""
    moved = await session.execute(
        update(Organization)
        .where(
            Organization.id == org_id,
            (Organization.max_members.is_(None)) | (Organization.member_count < Organization.max_members),
        )
        .values(member_count=Organization.member_count + 1)
        .execution_options(synchronize_session=False)
    )
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


async def _free_place(session: AsyncSession, org_id: str) -> None:
    await session.execute(
        update(Organization)
        .where(Organization.id == org_id, Organization.member_count > 0)
        .values(member_count=Organization.member_count - 1)
        .execution_options(synchronize_session=False)
    )


async def add_member(
    session: AsyncSession,
    org: Organization,
    *,
    member_id: str,
    member_type: str = "user",
    scopes: list[str] | None = None,
    group_ids: list[str] | None = None,
    user_title: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Member:
    """Add a user to ``org``: 404 for a user not in the org's issuer, 409 when already a member or
    when the organization is full."""
    if member_type != "user":
        raise InvalidInput.on("member_type", "unsupported", "Only users can be members for now")
    user = await session.scalar(
        select(User.id).where(User.id == member_id, User.issuer_id == org.issuer_id, User.status != "deleted")
    )
    if user is None:
        raise NotFound("User")
    granted = scope_names("scopes", scopes) if scopes is not None else list(org.default_member_scopes or [])
    groups = await _check_groups(session, org.id, group_ids or [])
    if await session.scalar(
        select(Membership.id).where(Membership.org_id == org.id, Membership.member_id == member_id)
    ):
        raise Conflict("This user is already a member of the organization")
    if not await take_place(session, org.id):
        raise Conflict(f"The organization has reached its limit of {org.max_members} members")
    now = now_ms()
    row = Membership(
        id=ids.membership_id(),
        org_id=org.id,
        issuer_id=org.issuer_id,
        member_id=member_id,
        member_type=member_type,
        status="active",
        scopes=granted,
        user_title=user_title,
        metadata_=metadata or {},
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    # The unique (org, member) decides between concurrent adds of the same user; the place taken
    # above goes back with the rollback.
    await _flush_unique(session, "This user is already a member of the organization")
    await _forget_removal(session, org.id, member_id)  # added back: SSO sign-ins keep them again
    await _set_groups(session, row.id, groups)
    await session.flush()
    await _member_emit(session, "organization.membership.created", row)
    [member] = await members_of(session, [row])
    return member


JOINED, FULL, REMOVED = "joined", "full", "removed"


async def join(session: AsyncSession, org: Organization, user_id: str) -> str:
    """Make ``user_id`` an active member of ``org`` with its ``default_member_scopes`` unless it is a
    member already (just-in-time membership of an SSO sign-in): ``JOINED`` (or already a member),
    ``FULL`` when the organization has no room, ``REMOVED`` when an administrator removed this
    user from it (the removal sticks until the API or an invitation adds them back). In a
    savepoint: of two first sign-ins at once, the unique (org, member) keeps one row, and the
    loser's place goes back with its savepoint."""
    exists_ = select(Membership.id).where(Membership.org_id == org.id, Membership.member_id == user_id)
    if await session.scalar(exists_):
        return JOINED
    removed = select(MemberRemoval.user_id).where(
        MemberRemoval.org_id == org.id, MemberRemoval.user_id == user_id
    )
    if await session.scalar(removed) is not None:
        return REMOVED
    now = now_ms()
    row = Membership(
        id=ids.membership_id(),
        org_id=org.id,
        issuer_id=org.issuer_id,
        member_id=user_id,
        member_type="user",
        status="active",
        scopes=list(org.default_member_scopes or []),
        metadata_={},
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            if not await take_place(session, org.id):
                return FULL
            session.add(row)
            await session.flush()
    except IntegrityError:
        return JOINED  # a concurrent sign-in of the same user made the membership
    await _member_emit(session, "organization.membership.created", row)
    return JOINED


async def _forget_removal(session: AsyncSession, org_id: str, user_id: str) -> None:
    await session.execute(
        delete(MemberRemoval).where(MemberRemoval.org_id == org_id, MemberRemoval.user_id == user_id)
    )


def _holds(column: Any, scope: str) -> ColumnElement[bool]:
    """Whether the JSON list in ``column`` holds ``scope``: a match on its serialised text, which
    both databases produce the same way for a list of strings (both escape forms are tried)."""
    forms = {json.dumps(scope), json.dumps(scope, ensure_ascii=False)}
    return or_(*(cast(column, Text).contains(form, autoescape=True) for form in forms))


def members_statement(org_id: str, status: str | None, scope: str | None) -> Select[Any]:
    """Members of ``org_id``; ``scope``: those whose effective scopes hold it (their own or a
    group's). The org's (org_id, id) index bounds the scan."""
    stmt = select(Membership).where(Membership.org_id == org_id)
    if status:
        stmt = stmt.where(Membership.status == status)
    if scope:
        via_group = exists().where(
            MembershipGroup.membership_id == Membership.id,
            Group.id == MembershipGroup.group_id,
            _holds(Group.scopes, scope),
        )
        stmt = stmt.where(or_(_holds(Membership.scopes, scope), via_group))
    return stmt


async def get_member(
    session: AsyncSession, org_id: str, member_id: str, *, for_update: bool = False
) -> Membership:
    stmt = select(Membership).where(Membership.org_id == org_id, Membership.member_id == member_id)
    row = await session.scalar(versions.for_update(stmt) if for_update else stmt)
    if row is None:
        raise NotFound("Member")
    return row


async def update_member(
    session: AsyncSession, org_id: str, member_id: str, changes: dict[str, Any], if_match: str | None
) -> Member:
    row = await get_member(session, org_id, member_id, for_update=True)
    await versions.claim(session, row, "Member", if_match)
    if "scopes" in changes:
        row.scopes = scope_names("scopes", changes["scopes"])
    if "user_title" in changes:
        row.user_title = changes["user_title"]
    if "metadata" in changes:
        row.metadata_ = changes["metadata"] or {}
    if changes.get("status"):
        row.status = changes["status"]
    if "groups" in changes:
        await _set_groups(session, row.id, await _check_groups(session, org_id, changes["groups"] or []))
    await session.flush()
    await _member_emit(session, "organization.membership.updated", row)
    [member] = await members_of(session, [row])
    return member


async def remove_member(session: AsyncSession, org_id: str, member_id: str, if_match: str | None) -> None:
    row = await get_member(session, org_id, member_id, for_update=True)
    await versions.claim(session, row, "Member", if_match)
    await _member_emit(session, "organization.membership.deleted", row)
    await session.delete(row)
    await _free_place(session, org_id)
    if row.member_type == "user":
        # Remembered so the organization's SSO connection does not make them a member again.
        await _forget_removal(session, org_id, member_id)
        session.add(
            MemberRemoval(org_id=org_id, user_id=member_id, issuer_id=row.issuer_id, removed_at=now_ms())
        )
    await session.flush()


async def remove_user_everywhere(session: AsyncSession, user_id: str) -> None:
    """A deleted user leaves every organization (each gets its place back)."""
    rows = (await session.scalars(select(Membership).where(Membership.member_id == user_id))).all()
    for row in rows:
        await _member_emit(session, "organization.membership.deleted", row)
        await session.delete(row)
        await _free_place(session, row.org_id)
    await session.execute(delete(MemberRemoval).where(MemberRemoval.user_id == user_id))
    await session.flush()


# --- tokens ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenMembership:
    org_id: str
    title: str | None
    scopes: list[str]
    joined_at: int  # seconds

    def claim(self) -> dict[str, Any]:
        return {"id": self.org_id, "title": self.title, "scopes": self.scopes, "joined_at": self.joined_at}


async def token_memberships(session: AsyncSession, user_id: str) -> list[TokenMembership]:
    """The user's active memberships of active organizations (idp-api §D.1), with effective scopes,
    in one query (memberships left-joined to their groups), oldest membership first."""
    rows = await session.execute(
        select(
            Membership.id,
            Membership.org_id,
            Membership.user_title,
            Membership.scopes,
            Membership.created_at,
            Group.scopes,
        )
        .join(Organization, Organization.id == Membership.org_id)
        .outerjoin(MembershipGroup, MembershipGroup.membership_id == Membership.id)
        .outerjoin(Group, Group.id == MembershipGroup.group_id)
        .where(
            Membership.member_id == user_id,
            Membership.status == "active",
            Organization.status == "active",
        )
        .order_by(Membership.id, Group.id)
    )
    found: dict[str, TokenMembership] = {}
    for membership_id, org_id, title, own, joined, group_scopes in rows.all():
        entry = found.get(membership_id)
        if entry is None:
            entry = found[membership_id] = TokenMembership(org_id, title, list(own or []), joined // 1000)
        if group_scopes:
            entry.scopes[:] = effective_scopes(entry.scopes, group_scopes)
    return list(found.values())


def restricted(
    memberships: list[TokenMembership], restriction: dict[str, Any] | None
) -> list[TokenMembership]:
    """The client's organization restriction (``settings.openid.organizations``): all, none or an
    allowlist of organization IDs."""
    restriction = restriction or {}
    mode = restriction.get("mode", "all")
    if mode == "none":
        return []
    if mode == "allowlist":
        allowed = set(restriction.get("allowlist") or [])
        return [m for m in memberships if m.org_id in allowed]
    return memberships


def has_token_memberships(user_id: Any) -> Exists:
    """Whether ``user_id`` (a value or a column) has a membership ``token_memberships`` would list:
    a caller that reads it along with other rows can skip that query for the many users without."""
    return exists().where(
        Membership.member_id == user_id,
        Membership.status == "active",
        Organization.id == Membership.org_id,
        Organization.status == "active",
    )


async def enforces_mfa(session: AsyncSession, user_id: str) -> bool:
    """Whether an active organization the user is an active member of requires a second factor."""
    found = await session.scalar(
        select(
            exists().where(
                Membership.member_id == user_id,
                Membership.status == "active",
                Organization.id == Membership.org_id,
                Organization.status == "active",
                Organization.mfa_required.is_(True),
            )
        )
    )
    return bool(found)


async def names(session: AsyncSession, org_ids: Sequence[str]) -> dict[str, str | None]:
    rows = await session.execute(
        select(Organization.id, Organization.name).where(Organization.id.in_(org_ids))
    )
    return {org_id: name for org_id, name in rows.all()}
