"""Account notes through authpi-admin 1.4.0: CRUD, list order (pinned first, then newest) and
composite-cursor pages, every filter, parsed mentions and references, backlinks, count, ETags,
idempotent create, isolation between accounts, scopes, validation, and log-only events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import ForbiddenError, NotFoundError, PreconditionFailedError, ValidationError
from authpi_admin.generated.models import Issuer, Note, User

from authpi.services.event_types import CATALOGUE, EVENT_TYPES, LOG_ONLY_EVENT_TYPES, LOGGED_EVENT_TYPES
from tests.core.conftest import ClientFactory, KeyMaker, assert_error_envelope, field_names
from tests.db_query import count, rows
from tests.harness import RunningServer

pytestmark = pytest.mark.anyio


async def make_user(admin: AuthPIAdmin, issuer: Issuer, name: str) -> User:
    return await admin.issuer(issuer.id).users.create({"username_type": "unique-name", "username": name})


async def note_on(admin: AuthPIAdmin, subject: User | Issuer, content: str = "note", **extra: Any) -> Note:
    if isinstance(subject, User):
        body = {"subject_type": "user", "subject_id": subject.id, "issuer_id": subject.issuer_id}
    else:
        body = {"subject_type": "issuer", "subject_id": subject.id}
    return await admin.notes.create({**body, "content": content, **extra})  # type: ignore[typeddict-item]


async def walk(admin: AuthPIAdmin, **filters: Any) -> list[Note]:
    return [note async for note in admin.notes.list_all(**filters)]


async def test_create_get_update_delete(
    admin: AuthPIAdmin, issuer: Issuer, server: RunningServer, unique: str
) -> None:
    user = await make_user(admin, issuer, f"crud-{unique}")
    note = await note_on(admin, user, "First **contact**", pinned=True)
    assert note.id.startswith("note_")
    assert (note.account_id, note.issuer_id) == (server.account_id, issuer.id)
    assert (note.subject_type, note.subject_id) == ("user", user.id)
    assert note.content == "First **contact**" and note.pinned is True
    assert note.created_by == server.key_id and note.updated_by is None
    assert note.created_at == note.updated_at and note._etag == f'"{int(note.created_at)}"'
    assert note.mentions == [] and note.references == []

    got = await admin.notes.get(note.id)
    assert got == note and got._etag == note._etag

    updated = await admin.notes.update(note.id, {"content": "Second contact", "pinned": False})
    assert updated.content == "Second contact" and updated.pinned is False
    assert updated.updated_by == server.key_id
    assert updated.updated_at is not None and updated.updated_at > note.created_at
    assert updated._etag == f'"{int(updated.updated_at)}"' != note._etag
    assert updated.created_at == note.created_at and updated.created_by == note.created_by
    # null leaves pinned as it is; content alone changes only content.
    again = await admin.notes.update(note.id, {"pinned": None, "content": "Third"})
    assert (again.content, again.pinned) == ("Third", False)

    await admin.notes.delete(note.id, if_match=again._etag)
    with pytest.raises(NotFoundError):
        await admin.notes.get(note.id)
    with pytest.raises(NotFoundError):
        await admin.notes.update(note.id, {"pinned": True})
    with pytest.raises(NotFoundError):
        await admin.notes.delete(note.id)


async def test_stale_if_match_is_412_on_update_and_delete(admin: AuthPIAdmin, issuer: Issuer) -> None:
    note = await note_on(admin, issuer, "versioned")
    updated = await admin.notes.update(note.id, {"pinned": True}, if_match=note._etag)
    with pytest.raises(PreconditionFailedError) as stale_update:
        await admin.notes.update(note.id, {"content": "lost"}, if_match=note._etag)
    assert stale_update.value.current_etag == updated._etag
    with pytest.raises(PreconditionFailedError):
        await admin.notes.delete(note.id, if_match=note._etag)
    assert (await admin.notes.get(note.id)).content == "versioned"
    await admin.notes.delete(note.id, if_match=updated._etag)


async def test_list_is_pinned_first_then_newest_across_cursor_pages(
    admin: AuthPIAdmin, issuer: Issuer, raw: httpx.AsyncClient, account_path: str
) -> None:
    created = [await note_on(admin, issuer, f"n{i}", pinned=i in (1, 3)) for i in range(7)]
    by_content = {note.content: note for note in created}
    expected = ["n3", "n1", "n6", "n5", "n4", "n2", "n0"]

    first = await admin.notes.list(limit=3, subject_type="issuer", subject_id=issuer.id)
    assert [n.content for n in first.data] == expected[:3]
    assert first.has_more and first.next_cursor is not None
    # The documented `pinned:timestamp` cursor, with the note ID to break ties of a millisecond.
    pinned, timestamp, last_id = first.next_cursor.split(":")
    assert (pinned, int(timestamp), last_id) == ("0", by_content["n6"].created_at, by_content["n6"].id)

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await admin.notes.list(limit=2, cursor=cursor, issuer_id=issuer.id)
        pages.append([n.content for n in page.data])
        if not page.has_more:
            assert page.next_cursor is None
            break
        cursor = page.next_cursor
    assert pages == [expected[0:2], expected[2:4], expected[4:6], expected[6:7]]
    assert [n.content for n in await walk(admin, limit=2, issuer_id=issuer.id)] == expected

    # A `pinned:timestamp` cursor alone continues after that position.
    n5 = by_content["n5"]
    response = await raw.get(
        f"{account_path}/notes", params={"issuer_id": issuer.id, "cursor": f"false:{int(n5.created_at)}"}
    )
    assert response.status_code == 200
    rest = [n["content"] for n in response.json()["data"]]
    assert rest[-2:] == ["n2", "n0"] and "n5" not in rest and "n3" not in rest

    # Pinning moves a note up among the pinned ones, still newest first.
    await admin.notes.update(by_content["n0"].id, {"pinned": True})
    order = [n.content for n in await walk(admin, limit=2, issuer_id=issuer.id)]
    assert order == ["n3", "n1", "n0", "n6", "n5", "n4", "n2"]


async def test_list_filters(
    admin: AuthPIAdmin,
    issuer: Issuer,
    make_key: KeyMaker,
    client_for: ClientFactory,
    server: RunningServer,
    unique: str,
) -> None:
    ann = await make_user(admin, issuer, f"ann-{unique}")
    bob = await make_user(admin, issuer, f"bob-{unique}")
    on_ann = await note_on(admin, ann, f"about ann, cc @[Bob]({bob.id})")
    on_bob = await note_on(admin, bob, "about bob", pinned=True)
    on_issuer = await note_on(admin, issuer, f"realm note mentioning @[Ann]({ann.id})")
    writer = await make_key(["notes:write"])
    async with client_for(writer.id, writer.secret_plain) as other_writer:
        by_writer = await note_on(other_writer, ann, "second opinion")
    assert by_writer.created_by == writer.id

    async def ids(**filters: Any) -> list[str]:
        return [n.id for n in await walk(admin, **filters)]

    everything = await ids(issuer_id=issuer.id)
    assert everything == [on_bob.id, by_writer.id, on_issuer.id, on_ann.id]
    assert await ids(issuer_id=issuer.id, subject_type="user") == [on_bob.id, by_writer.id, on_ann.id]
    assert await ids(issuer_id=issuer.id, subject_type="user", subject_id=ann.id) == [by_writer.id, on_ann.id]
    assert await ids(subject_type="issuer", subject_id=issuer.id) == [on_issuer.id]
    assert await ids(issuer_id=issuer.id, created_by=writer.id) == [by_writer.id]
    assert await ids(issuer_id=issuer.id, created_by=server.key_id) == [on_bob.id, on_issuer.id, on_ann.id]
    assert await ids(issuer_id=issuer.id, pinned=True) == [on_bob.id]
    assert await ids(issuer_id=issuer.id, pinned=False) == [by_writer.id, on_issuer.id, on_ann.id]
    assert await ids(mentions_user_id=bob.id) == [on_ann.id]
    assert await ids(mentions_user_id=ann.id) == [on_issuer.id]
    assert await ids(issuer_id=issuer.id, subject_type="client") == []

    # subject_id needs subject_type; user and org subjects need issuer_id.
    with pytest.raises(ValidationError) as no_type:
        await admin.notes.list(subject_id=ann.id)
    assert no_type.value.status_code == 400 and field_names(no_type.value.fields) == {"subject_type"}
    for subject_type in ("user", "org"):
        with pytest.raises(ValidationError) as no_issuer:
            await admin.notes.list(subject_type=subject_type, subject_id=ann.id)
        assert no_issuer.value.status_code == 400 and field_names(no_issuer.value.fields) == {"issuer_id"}


async def test_mentions_and_references_are_parsed_from_the_content(
    admin: AuthPIAdmin,
    issuer: Issuer,
    make_key: KeyMaker,
    other_account: dict[str, str],
    client_for: ClientFactory,
    unique: str,
) -> None:
    ann = await make_user(admin, issuer, f"ann-{unique}")
    bob = await make_user(admin, issuer, f"bob-{unique}")
    web = {"name": "web", "settings": {"openid": {"redirect_uris": ["https://app.example.com/cb"]}}}
    client = await admin.issuer(issuer.id).clients.create(web)  # type: ignore[arg-type]
    key = await make_key(["issuers:read"])
    async with client_for(other_account["key_id"], other_account["key_secret"]) as other:
        their_issuer = await other.issuers.create({"name": "theirs"})
        stranger = await other.issuer(their_issuer.id).users.create(
            {"username_type": "unique-name", "username": f"stranger-{unique}"}
        )
    content = "\n".join(
        [
            f"Talked to @[Bob B.]({bob.id}) and @[Ann]({ann.id}); again @[Bobby]({bob.id}).",
            f"Not ours: @[Stranger]({stranger.id}), unknown @[Ghost](usr_doesnotexist).",
            f"Malformed: @[]({ann.id}) @Ann({ann.id}) @[Ann] ({ann.id}) [[user:{ann.id}]",
            "[[team:x]] [[user:]] [[user:a b]] @[Ann](usr bad)",
            f"Code is quoted: `@[Ann]({ann.id})` and ```\n[[issuer:{issuer.id}]]\n```",
            f"See [[client:{client.id}|the web app]], [[issuer:{issuer.id}]], [[api_key:{key.id}|CI key]],",
            f"[[user:{ann.id}]], again [[client:{client.id}]], [[user:{stranger.id}]], [[org:org_x]],",
            f"[[issuer:{their_issuer.id}]] and [[webhook:wh_unknown]].",
        ]
    )
    note = await note_on(admin, issuer, content)
    assert note.content == content
    assert note.mentions is not None and note.references is not None
    assert [m.mentioned_user_id for m in note.mentions] == [bob.id, ann.id]
    assert all(m.created_at == note.created_at for m in note.mentions)
    assert [(r.ref_type, r.ref_id, r.ref_issuer_id) for r in note.references] == [
        ("client", client.id, issuer.id),
        ("issuer", issuer.id, None),
        ("api_key", key.id, None),
        ("user", ann.id, issuer.id),
    ]
    assert (await admin.notes.get(note.id)).references == note.references

    # An update re-parses: kept links keep their created_at, dropped ones go, new ones appear.
    updated = await admin.notes.update(note.id, {"content": f"@[Ann]({ann.id}) and [[issuer:{issuer.id}]]"})
    assert updated.mentions is not None and updated.references is not None
    assert [(m.mentioned_user_id, m.created_at) for m in updated.mentions] == [(ann.id, note.created_at)]
    assert [(r.ref_type, r.ref_id, r.created_at) for r in updated.references] == [
        ("issuer", issuer.id, note.created_at)
    ]
    assert [n.id for n in await walk(admin, mentions_user_id=bob.id)] == []
    # Changing only `pinned` keeps the links.
    pinned = await admin.notes.update(note.id, {"pinned": True})
    assert pinned.mentions == updated.mentions and pinned.references == updated.references
    renamed = await admin.notes.update(note.id, {"content": f"@[Bob]({bob.id})"})
    assert renamed.mentions is not None and renamed.mentions[0].created_at > note.created_at


async def test_backlinks_is_exactly_a_data_list(
    admin: AuthPIAdmin, issuer: Issuer, raw: httpx.AsyncClient, account_path: str, unique: str
) -> None:
    ann = await make_user(admin, issuer, f"ann-{unique}")
    older = await note_on(admin, issuer, f"first [[user:{ann.id}]]")
    await note_on(admin, issuer, "no link")
    newer = await note_on(admin, ann, f"self [[user:{ann.id}|Ann]] [[user:{ann.id}]]")
    pinned = await note_on(admin, issuer, f"pinned [[user:{ann.id}]]", pinned=True)

    response = await raw.get(f"{account_path}/notes/backlinks", params={"ref_type": "user", "ref_id": ann.id})
    assert response.status_code == 200
    assert list(response.json()) == ["data"]  # a sibling key crashes authpi-admin 1.4.0

    found = await admin.notes.backlinks("user", ann.id)
    assert isinstance(found, list) and [n.id for n in found] == [pinned.id, newer.id, older.id]
    assert [n.id for n in await admin.notes.backlinks("user", ann.id, limit=2)] == [pinned.id, newer.id]
    assert await admin.notes.backlinks("issuer", issuer.id) == []
    assert await admin.notes.backlinks("webhook", "wh_nothing") == []
    for params in ({"ref_type": "user"}, {"ref_id": ann.id}, {"ref_type": "team", "ref_id": "x"}):
        bad = await raw.get(f"{account_path}/notes/backlinks", params=params)
        assert bad.status_code == 400, params
        assert_error_envelope(bad.json(), "invalid_request")


async def test_count(
    admin: AuthPIAdmin, issuer: Issuer, raw: httpx.AsyncClient, account_path: str, unique: str
) -> None:
    ann = await make_user(admin, issuer, f"ann-{unique}")
    assert (await admin.notes.count("user", ann.id)).count == 0
    for i in range(3):
        await note_on(admin, ann, f"n{i}", pinned=i == 0)
    await note_on(admin, issuer, "on the issuer")
    assert (await admin.notes.count("user", ann.id)).count == 3
    assert (await admin.notes.count("issuer", issuer.id)).count == 1
    assert (await admin.notes.count("client", ann.id)).count == 0
    response = await raw.get(
        f"{account_path}/notes/count", params={"subject_type": "user", "subject_id": ann.id}
    )
    assert response.json() == {"data": {"count": 3}}
    missing = await raw.get(f"{account_path}/notes/count", params={"subject_type": "user"})
    assert missing.status_code == 400 and field_names(missing.json()["fields"]) == {"subject_id"}


async def test_create_with_idempotency_key_replays(
    admin: AuthPIAdmin, issuer: Issuer, raw: httpx.AsyncClient, account_path: str, unique: str
) -> None:
    body = {"subject_type": "issuer", "subject_id": issuer.id, "content": f"once {unique}"}
    headers = {"Idempotency-Key": f"note-{unique}"}
    first = await raw.post(f"{account_path}/notes", json=body, headers=headers)
    replay = await raw.post(f"{account_path}/notes", json=body, headers=headers)
    assert first.status_code == replay.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json() and replay.headers["etag"] == first.headers["etag"]
    reused = await raw.post(f"{account_path}/notes", json={**body, "content": "other"}, headers=headers)
    assert reused.status_code == 422

    sdk_first = await admin.notes.create(
        {**body, "content": f"sdk {unique}"}, idempotency_key=f"sdk-{unique}"
    )  # type: ignore[typeddict-item]
    sdk_again = await admin.notes.create(
        {**body, "content": f"sdk {unique}"}, idempotency_key=f"sdk-{unique}"
    )  # type: ignore[typeddict-item]
    assert sdk_again.id == sdk_first.id
    assert (await admin.notes.count("issuer", issuer.id)).count == 2

    patch_headers = {"Idempotency-Key": f"patch-{unique}", "If-Match": first.headers["etag"]}
    note_path = f"{account_path}/notes/{first.json()['data']['id']}"
    patched = await raw.patch(note_path, json={"pinned": True}, headers=patch_headers)
    patched_again = await raw.patch(note_path, json={"pinned": True}, headers=patch_headers)
    assert patched.status_code == patched_again.status_code == 200
    assert patched_again.headers["idempotent-replayed"] == "true"
    assert patched_again.json() == patched.json()


async def test_another_accounts_subjects_and_notes_are_not_found(
    admin: AuthPIAdmin,
    issuer: Issuer,
    other_account: dict[str, str],
    client_for: ClientFactory,
    raw: httpx.AsyncClient,
    unique: str,
) -> None:
    ann = await make_user(admin, issuer, f"ann-{unique}")
    mine = await note_on(admin, ann, f"private [[user:{ann.id}]] @[Ann]({ann.id})")
    async with client_for(other_account["key_id"], other_account["key_secret"]) as other:
        for subject in (ann, issuer):
            with pytest.raises(NotFoundError):
                await note_on(other, subject, "trespass")
        with pytest.raises(NotFoundError):
            await other.notes.get(mine.id)
        with pytest.raises(NotFoundError):
            await other.notes.update(mine.id, {"content": "hijacked"})
        with pytest.raises(NotFoundError):
            await other.notes.delete(mine.id)
        assert await walk(other, issuer_id=issuer.id) == []
        assert await walk(other, mentions_user_id=ann.id) == []
        assert await other.notes.backlinks("user", ann.id) == []
        assert (await other.notes.count("user", ann.id)).count == 0
        theirs = await other.issuers.create({"name": "theirs"})
        their_note = await note_on(other, theirs, "their own")
    with pytest.raises(NotFoundError):
        await admin.notes.get(their_note.id)
    assert (await admin.notes.get(mine.id)).content.startswith("private")
    # Another account's path is 404 as well.
    response = await raw.get(f"/v1/accounts/{other_account['account_id']}/notes")
    assert response.status_code == 404
    # A user named with another issuer of this account is not found either.
    second = await admin.issuers.create({"name": f"second-{unique}"})
    with pytest.raises(NotFoundError):
        await admin.notes.create(
            {"subject_type": "user", "subject_id": ann.id, "issuer_id": second.id, "content": "x"}
        )


async def test_notes_need_their_scopes(
    admin: AuthPIAdmin, issuer: Issuer, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    note = await note_on(admin, issuer, "scoped")
    body = {"subject_type": "issuer", "subject_id": issuer.id, "content": "x"}
    denied = await make_key(["issuers:read", "events:read"])
    async with client_for(denied.id, denied.secret_plain) as client:
        for call in (
            client.notes.list(),
            client.notes.get(note.id),
            client.notes.backlinks("issuer", issuer.id),
            client.notes.count("issuer", issuer.id),
            client.notes.create(body),  # type: ignore[arg-type]
            client.notes.update(note.id, {"pinned": True}),
            client.notes.delete(note.id),
        ):
            with pytest.raises(ForbiddenError):
                await call
    reader = await make_key(["notes:read"])
    async with client_for(reader.id, reader.secret_plain) as client:
        assert (await client.notes.get(note.id)).id == note.id
        assert note.id in [n.id for n in (await client.notes.list(issuer_id=issuer.id)).data]
        assert (await client.notes.count("issuer", issuer.id)).count == 1
        for call in (
            client.notes.create(body),  # type: ignore[arg-type]
            client.notes.update(note.id, {"pinned": True}),
            client.notes.delete(note.id),
        ):
            with pytest.raises(ForbiddenError):
                await call
    writer = await make_key(["notes:write"])
    async with client_for(writer.id, writer.secret_plain) as client:
        created = await client.notes.create(body)  # type: ignore[arg-type]
        assert (await client.notes.get(created.id)).created_by == writer.id
        await client.notes.delete(created.id)


async def test_invalid_input_is_a_clear_error(
    admin: AuthPIAdmin, issuer: Issuer, raw: httpx.AsyncClient, account_path: str, unique: str
) -> None:
    ann = await make_user(admin, issuer, f"ann-{unique}")
    base = {"subject_type": "issuer", "subject_id": issuer.id, "content": "ok"}

    async def create(body: dict[str, Any]) -> httpx.Response:
        return await raw.post(f"{account_path}/notes", json=body)

    for body, status, fields in (
        ({**base, "content": "x" * 20_001}, 400, {"content"}),
        ({**base, "content": ""}, 400, {"content"}),
        ({k: v for k, v in base.items() if k != "subject_id"}, 400, {"subject_id"}),
        ({**base, "subject_type": "team"}, 400, {"subject_type"}),
        ({**base, "colour": "red"}, 400, {"colour"}),
        ({**base, "pinned": "maybe"}, 400, {"pinned"}),
        ({**base, "subject_type": "user", "subject_id": ann.id}, 400, {"issuer_id"}),
        ({**base, "issuer_id": "i_other"}, 400, {"issuer_id"}),
        (
            {**base, "subject_type": "org", "subject_id": "org_x", "issuer_id": issuer.id},
            400,
            {"subject_type"},
        ),
        ({**base, "subject_type": "agent", "subject_id": "agt_x"}, 400, {"subject_type"}),
        ({**base, "content": " ".join(f"@[U]({ann.id[:-3]}{i:03d})" for i in range(101))}, 422, {"content"}),
        ({**base, "content": " ".join(f"[[user:u{i}]]" for i in range(101))}, 422, {"content"}),
    ):
        response = await create(body)
        assert response.status_code == status, (body, response.text)
        assert_error_envelope(response.json(), "invalid_request")
        assert field_names(response.json()["fields"]) == fields, response.json()
    unavailable = await create({**base, "subject_type": "agent", "subject_id": "agt_x"})
    assert "not available" in unavailable.json()["error_description"]
    for subject_type, subject_id in (("user", "usr_nobody"), ("client", "c_nobody"), ("issuer", "i_nobody")):
        missing = await create(
            {
                **base,
                "subject_type": subject_type,
                "subject_id": subject_id,
                "issuer_id": issuer.id if subject_type != "issuer" else None,
            }
        )
        assert missing.status_code == 404, missing.text

    # 20,000 characters and 100 distinct mentions are within bounds.
    assert (await create({**base, "content": "x" * 20_000})).status_code == 201
    hundred = " ".join(f"@[U]({ann.id})" for _ in range(150)) + " ".join(f"[[user:u{i}]]" for i in range(100))
    assert (await create({**base, "content": hundred})).status_code == 201

    note = await note_on(admin, issuer, "to patch")
    path = f"{account_path}/notes/{note.id}"
    null_content = await raw.patch(path, json={"content": None})
    assert null_content.status_code == 422 and field_names(null_content.json()["fields"]) == {"content"}
    too_long = await raw.patch(path, json={"content": "y" * 20_001})
    assert too_long.status_code == 400 and field_names(too_long.json()["fields"]) == {"content"}
    for query in ("limit=0", "limit=101", "cursor=nonsense", "cursor=1:abc", "cursor=2:5", "pinned=perhaps"):
        response = await raw.get(f"{account_path}/notes?{query}")
        assert response.status_code == 400, (query, response.text)
        assert_error_envelope(response.json(), "invalid_request")


async def test_note_events_are_logged_but_never_delivered(
    admin: AuthPIAdmin, issuer: Issuer, server: RunningServer, unique: str
) -> None:
    # The webhook catalogue stays the 106 types of §C.16; note (and SMS) types are log-only.
    assert len(CATALOGUE) == len(EVENT_TYPES) == 106
    assert {"note.created", "note.updated", "note.deleted", "sms.sent", "sms.failed"} == LOG_ONLY_EVENT_TYPES
    assert not LOG_ONLY_EVENT_TYPES & EVENT_TYPES and LOGGED_EVENT_TYPES == EVENT_TYPES | LOG_ONLY_EVENT_TYPES

    ann = await make_user(admin, issuer, f"ann-{unique}")
    note = await note_on(admin, ann, f"text {unique} about @[Ann]({ann.id}) [[user:{ann.id}]]")
    assert note.mentions and note.references
    updated = await admin.notes.update(note.id, {"pinned": True})
    await admin.notes.delete(note.id)

    logged = [
        e
        async for e in admin.events.list_all(
            user_id=ann.id, event_types="note.created,note.updated,note.deleted"
        )
    ]
    assert [e.type for e in reversed(logged)] == ["note.created", "note.updated", "note.deleted"]
    for event in logged:
        assert event.subject == {"type": "note", "id": note.id}
        assert event.trigger == "api" and event.auth and event.auth["key_id"] == server.key_id
        assert event.data and event.data["subject_id"] == ann.id and event.data["issuer_id"] == issuer.id
    created, changed, deleted = reversed(logged)
    assert created.data and created.data["content"] == note.content
    assert (
        changed.data and changed.data["pinned"] is True and changed.data["updated_at"] == updated.updated_at
    )
    assert deleted.data is not None and "content" not in deleted.data
    assert [e.id for e in await _events(admin, issuer.id, "note.created")] == [created.id]

    event_ids = [e.id for e in logged]
    placeholders = ", ".join("?" for _ in event_ids)
    assert await count(server, "webhook_deliveries", f"event_id IN ({placeholders})", *event_ids) == 0
    assert await count(server, "webhook_deliveries", "event_type LIKE ?", "note.%") == 0
    # The deleted note's links went with it.
    for table in ("note_mentions", "note_references"):
        assert await rows(server, f"SELECT note_id FROM {table} WHERE note_id = ?", note.id) == []


async def _events(admin: AuthPIAdmin, issuer_id: str, types: str) -> list[Any]:
    return [e async for e in admin.events.list_all(issuer_id=issuer_id, event_types=types)]


async def test_notes_outlive_their_subject(admin: AuthPIAdmin, issuer: Issuer, unique: str) -> None:
    ann = await make_user(admin, issuer, f"ann-{unique}")
    note = await note_on(admin, ann, "history")
    about_issuer = await note_on(admin, issuer, f"mentions @[Ann]({ann.id})")
    await admin.issuer(issuer.id).users.delete(ann.id)
    await admin.issuers.delete(issuer.id)
    assert (await admin.notes.get(note.id)).subject_id == ann.id
    listed = await walk(admin, subject_type="user", subject_id=ann.id, issuer_id=issuer.id)
    assert [n.id for n in listed] == [note.id]
    assert (await admin.notes.count("user", ann.id)).count == 1
    assert [n.id for n in await walk(admin, mentions_user_id=ann.id)] == [about_issuer.id]
    # They can still be edited, but no new note can be attached to a deleted subject.
    assert (await admin.notes.update(note.id, {"content": "closed"})).content == "closed"
    with pytest.raises(NotFoundError):
        await note_on(admin, ann, "too late")
