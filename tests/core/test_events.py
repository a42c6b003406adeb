"""The event log through authpi-admin: every Core API mutation leaves its catalogue event (same
transaction, actor and trace from the request, no secrets in it), and the events API lists (filters,
keyset pages newest first), gets and aggregates them, per account and behind ``events:read``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import ForbiddenError, NotFoundError, ValidationError
from authpi_admin.generated.models import Event, Issuer

from tests.conftest import BACKENDS, skip_without_postgres
from tests.core.conftest import ClientFactory, KeyMaker, field_names
from tests.harness import RunningServer, run_server

pytestmark = pytest.mark.anyio

PASSWORD = "Correct-Horse-Battery-9"
NEW_PASSWORD = "Another-Long-Passphrase-7"


async def events_of(admin: AuthPIAdmin, **filters: Any) -> list[Event]:
    return [event async for event in admin.events.list_all(limit=100, **filters)]


class Recorder:
    """Runs actions and returns the events each of them added (for this test's issuer or key)."""

    def __init__(self, admin: AuthPIAdmin) -> None:
        self.admin = admin
        self.seen: set[str] = set()
        self.all: list[Event] = []

    async def new(self, **filters: Any) -> list[Event]:
        found = [e for e in await events_of(self.admin, **filters) if e.id not in self.seen]
        self.seen.update(e.id for e in found)
        self.all.extend(found)
        return list(reversed(found))  # oldest first


def check(event: Event, type_: str, subject_id: str, server: RunningServer) -> None:
    assert event.type == type_, event
    assert event.subject == {"type": event.subject["type"], "id": subject_id} if event.subject else False
    assert event.trigger == "api" and event.source == "core-api"
    assert event.auth is not None and event.auth["key_id"] == server.api_key[0]
    assert event.auth["type"] == "api_key" and event.auth["ip"]
    assert event.trace and event.spec and event.id.startswith("evt_")
    assert abs(event.timestamp - time.time() * 1000) < 120_000


async def test_every_core_mutation_emits_its_catalogue_event(
    admin: AuthPIAdmin, server: RunningServer, unique: str
) -> None:
    rec = Recorder(admin)
    issuer = await admin.issuers.create({"name": f"events-{unique}"})
    iid = issuer.id
    by_issuer = {"issuer_id": iid}

    async def expect(types: list[str], subject_id: str, **filters: Any) -> list[Event]:
        got = await rec.new(**(filters or by_issuer))
        assert [e.type for e in got] == types, [e.type for e in got]
        for event, type_ in zip(got, types, strict=True):
            check(event, type_, subject_id, server)
        return got

    await expect(["issuer.created"], iid)
    await admin.issuers.update(iid, {"description": "changed"})
    await expect(["issuer.updated"], iid)

    github_secret = f"gh-secret-{unique}"
    github = {"client_id": "gh-client", "client_secret": github_secret}
    method = await admin.issuer(iid).auth_methods.create(
        {"method": "github", "name": "GitHub", "first_factor_only": True, "settings": github}
    )
    await expect(["issuer.auth-method.created"], method.id)
    await admin.issuer(iid).auth_methods.update(method.id, {"name": "Passwords"})
    await expect(["issuer.auth-method.updated"], method.id)

    web = {"name": "web", "settings": {"openid": {"redirect_uris": ["https://app.example.com/cb"]}}}
    created = await admin.issuer(iid).clients.create(web)  # type: ignore[arg-type]
    cid = created.id
    secrets = [created.secret]
    [ev] = await expect(["client.created"], cid)
    await admin.issuer(iid).clients.update(cid, {"status": "disabled"})
    await expect(["client.blocked"], cid)
    await admin.issuer(iid).clients.update(cid, {"status": "active"})
    await expect(["client.unblocked"], cid)
    await admin.issuer(iid).clients.update(cid, {"name": "web app"})
    await expect(["client.updated"], cid)
    rotated = await admin.issuer(iid).clients.rotate_secret(cid)
    secrets.append(rotated.secret)
    await expect(["client.secret.rotated"], cid)
    assert len(await events_of(admin, client_id=cid)) == 5

    user = await admin.issuer(iid).users.create(
        {"username_type": "unique-name", "username": f"ev-{unique}", "password": PASSWORD}
    )
    [ev] = await expect(["user.created"], user.id)
    assert ev.data and ev.data["username"] == f"ev-{unique}"
    await admin.issuer(iid).users.update(user.id, {"password": NEW_PASSWORD})
    await expect(["user.password.changed"], user.id)
    await admin.issuer(iid).users.update(user.id, {"profile": {"name": "Ev"}})
    await expect(["user.updated"], user.id)
    await admin.issuer(iid).users.update(user.id, {"status": "suspended"})
    await expect(["user.blocked"], user.id)
    await admin.issuer(iid).users.update(user.id, {"status": "active"})
    await expect(["user.unblocked"], user.id)
    await admin.issuer(iid).users.update(user.id, {"status": "disabled"})
    await expect(["user.blocked"], user.id)
    assert [e.type for e in await events_of(admin, user_id=user.id)] == [
        "user.blocked",
        "user.unblocked",
        "user.blocked",
        "user.updated",
        "user.password.changed",
        "user.created",
    ]
    await admin.issuer(iid).users.delete(user.id)
    await expect(["user.deleted"], user.id)
    await admin.issuer(iid).clients.delete(cid)
    await expect(["client.deleted"], cid)
    await admin.issuer(iid).auth_methods.delete(method.id)
    await expect(["issuer.auth-method.deleted"], method.id)
    await admin.issuers.delete(iid)
    await expect(["issuer.deleted"], iid)

    key = await admin.api_keys.create({"name": f"ev-{unique}", "restrictions": {"scopes": ["events:read"]}})
    secrets.append(key.secret_plain)
    by_key = {
        "event_types": "api-key.created,api-key.updated,api-key.blocked,api-key.unblocked,api-key.deleted"
    }

    async def key_step(types: list[str]) -> None:
        got = [e for e in await rec.new(**by_key) if e.subject and e.subject["id"] == key.id]
        assert [e.type for e in got] == types
        for event, type_ in zip(got, types, strict=True):
            check(event, type_, key.id, server)

    await key_step(["api-key.created"])
    await admin.api_keys.block(key.id)
    await key_step(["api-key.blocked"])
    await admin.api_keys.unblock(key.id)
    await key_step(["api-key.unblocked"])
    await admin.api_keys.update(key.id, {"description": "d"})
    await key_step(["api-key.updated"])
    secrets.append((await admin.api_keys.rotate(key.id)).secret_plain)
    await key_step(["api-key.updated"])
    await admin.api_keys.revoke(key.id)
    await key_step(["api-key.updated"])
    await admin.api_keys.delete(key.id)
    await key_step(["api-key.deleted"])

    hook = await admin.webhooks.create(
        {
            "name": f"ev-{unique}",
            "url": "https://hooks.example.com/events",
            "auth": {"type": "bearer+signature"},
            "events": ["user.created"],
        }
    )
    hook_auth = hook.auth.model_extra or {}
    secrets.extend([hook_auth["signature_secret_plain"], hook_auth["bearer_token_plain"]])
    by_hook = {
        "event_types": "webhook.created,webhook.updated,webhook.paused,webhook.resumed,webhook.deleted"
    }

    async def hook_step(types: list[str]) -> None:
        got = [e for e in await rec.new(**by_hook) if e.subject and e.subject["id"] == hook.id]
        assert [e.type for e in got] == types
        for event, type_ in zip(got, types, strict=True):
            check(event, type_, hook.id, server)

    await hook_step(["webhook.created"])
    await admin.webhook(hook.id).update({"status": "disabled"})
    await hook_step(["webhook.paused"])
    await admin.webhook(hook.id).update({"status": "active"})
    await hook_step(["webhook.resumed"])
    regenerated = await admin.webhook(hook.id).update({"auth": {"regenerate_signature_secret": True}})
    secrets.append((regenerated.auth.model_extra or {})["signature_secret_plain"])
    await hook_step(["webhook.updated"])
    await admin.webhook(hook.id).delete()
    await hook_step(["webhook.deleted"])

    await admin.accounts.update(server.account_id, {"description": f"events {unique}"})
    # Only this test's change: other tests (the API fuzzer) update the same account meanwhile.
    mine = f"events {unique}"
    [ev] = [
        e for e in await rec.new(event_types="account.updated") if (e.data or {}).get("description") == mine
    ]
    check(ev, "account.updated", server.account_id, server)

    # Nothing secret in any of them: no password, client or key secret, hash, or hidden field.
    dumped = json.dumps([e.model_dump() for e in rec.all])
    hidden = ("password_hash", "secret_digest", "argon2", "_sealed")
    for value in (PASSWORD, NEW_PASSWORD, github_secret, *secrets, *hidden):
        assert value and value not in dumped


async def test_list_filters_and_pages_newest_first(admin: AuthPIAdmin, issuer: Issuer, unique: str) -> None:
    users = admin.issuer(issuer.id).users
    made = [
        await users.create({"username_type": "unique-name", "username": f"p{i}-{unique}"}) for i in range(7)
    ]
    first = await admin.events.list(limit=3, issuer_id=issuer.id, event_types="user.created")
    assert len(first.data) == 3 and first.has_more and first.next_cursor
    walked = await events_of(admin, issuer_id=issuer.id, event_types="user.created")
    assert [e.subject["id"] for e in walked if e.subject] == [u.id for u in reversed(made)]
    paged: list[Event] = []
    cursor = None
    while True:
        page = await admin.events.list(
            limit=2, cursor=cursor, issuer_id=issuer.id, event_types="user.created"
        )
        paged.extend(page.data)
        if not page.has_more:
            assert page.next_cursor is None
            break
        cursor = page.next_cursor
    assert [e.id for e in paged] == [e.id for e in walked]
    assert [e.id for e in walked] == sorted((e.id for e in walked), reverse=True)

    both = await events_of(admin, issuer_id=issuer.id, event_types="user.created,issuer.created")
    assert {e.type for e in both} == {"user.created", "issuer.created"} and len(both) == 8
    one = await events_of(admin, user_id=made[3].id)
    assert [e.subject["id"] for e in one if e.subject] == [made[3].id]

    middle = walked[3].timestamp
    after = await events_of(admin, issuer_id=issuer.id, event_types="user.created", after=middle)
    before = await events_of(admin, issuer_id=issuer.id, event_types="user.created", before=middle)
    assert all(e.timestamp > middle for e in after) and all(e.timestamp < middle for e in before)
    at = [e for e in walked if e.timestamp == middle]
    assert len(after) + len(before) + len(at) == 7
    assert await events_of(admin, issuer_id=issuer.id, after=time.time() * 1000 + 60_000) == []

    got = await admin.events.get(walked[0].id)
    assert got == walked[0]


async def test_aggregate(admin: AuthPIAdmin, issuer: Issuer, unique: str) -> None:
    users = admin.issuer(issuer.id).users
    made = [
        await users.create({"username_type": "unique-name", "username": f"a{i}-{unique}"}) for i in range(3)
    ]
    await users.update(made[0].id, {"profile": {"name": "A"}})
    total = await admin.events.aggregate(issuer_id=issuer.id)
    assert total.interval is None and total.group_by is None and total.buckets == [{"count": 5}]
    grouped = await admin.events.aggregate(issuer_id=issuer.id, group_by="type", count_unique="user_id")
    assert grouped.group_by == "type"
    assert sorted(grouped.buckets, key=lambda b: b["type"]) == [
        {"type": "issuer.created", "count": 1, "unique_count": 0},
        {"type": "user.created", "count": 3, "unique_count": 3},
        {"type": "user.updated", "count": 1, "unique_count": 1},
    ]
    series = await admin.events.aggregate(issuer_id=issuer.id, interval="minute", event_types="user.created")
    assert series.interval == "minute" and sum(b["count"] for b in series.buckets) == 3
    assert all(b["timestamp"] % 60_000 == 0 for b in series.buckets)
    for bad in ({"group_by": "password"}, {"interval": "week"}, {"count_unique": "secret"}):
        with pytest.raises(ValidationError) as exc:
            await admin.events.aggregate(**bad)
        assert field_names(exc.value.fields) == set(bad)


async def test_events_belong_to_their_account(
    admin: AuthPIAdmin, issuer: Issuer, other_account: dict[str, str], client_for: ClientFactory
) -> None:
    [mine] = await events_of(admin, issuer_id=issuer.id)
    async with client_for(other_account["key_id"], other_account["key_secret"]) as other:
        with pytest.raises(NotFoundError):
            await other.events.get(mine.id)
        assert await events_of(other, issuer_id=issuer.id) == []
        theirs = await other.issuers.create({"name": "other's"})
        [their_event] = await events_of(other, issuer_id=theirs.id)
        assert their_event.type == "issuer.created"
    with pytest.raises(NotFoundError):
        await admin.events.get(their_event.id)
    with pytest.raises(NotFoundError):
        await admin.events.get("evt_doesnotexist")


async def test_events_need_the_events_read_scope(
    admin: AuthPIAdmin,
    issuer: Issuer,
    make_key: KeyMaker,
    client_for: ClientFactory,
    raw: httpx.AsyncClient,
    account_path: str,
) -> None:
    [event] = await events_of(admin, issuer_id=issuer.id)
    denied = await make_key(["issuers:read"])
    async with client_for(denied.id, denied.secret_plain) as client:
        for call in (client.events.list(), client.events.get(event.id), client.events.aggregate()):
            with pytest.raises(ForbiddenError):
                await call
    allowed = await make_key(["events:read"])
    async with client_for(allowed.id, allowed.secret_plain) as client:
        assert (await client.events.get(event.id)).id == event.id
        assert (await client.events.list(issuer_id=issuer.id)).data[0].id == event.id
    # Bad input is the error envelope, not a 500.
    for query in ("limit=0", "after=-1", "before=abc", f"event_types={'x,' * 5000}"):
        response = await raw.get(f"{account_path}/events?{query}")
        assert response.status_code in (400, 422), (query, response.text)


@pytest.fixture(scope="module", params=BACKENDS)
def short_retention(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server that keeps events 2 s and runs housekeeping every second."""
    skip_without_postgres(request.param)
    settings = {"AUTHPI_EVENT_RETENTION": "2", "AUTHPI_HOUSEKEEPING_INTERVAL": "1"}
    with run_server(request.param, settings) as running:
        yield running


async def test_events_older_than_the_retention_are_purged(short_retention: RunningServer) -> None:
    async with AuthPIAdmin(api_key=short_retention.api_key, base_url=short_retention.url) as admin:
        old = await admin.issuers.create({"name": "old"})
        assert len(await events_of(admin, issuer_id=old.id)) == 1
        deadline = time.monotonic() + 15
        while await events_of(admin, issuer_id=old.id):
            assert time.monotonic() < deadline, "the event outlived its retention"
            await asyncio.sleep(0.25)
        new = await admin.issuers.create({"name": "new"})
        assert len(await events_of(admin, issuer_id=new.id)) == 1


async def test_trace_is_the_request_id_and_refused_changes_leave_no_event(
    admin: AuthPIAdmin, issuer: Issuer, raw: httpx.AsyncClient, account_path: str, unique: str
) -> None:
    created = await raw.post(
        f"{account_path}/issuers/{issuer.id}/users",
        json={"username_type": "unique-name", "username": f"t-{unique}"},
        headers={"X-Request-Id": f"trace-{unique}"},
    )
    assert created.status_code == 201, created.text
    user_id = created.json()["data"]["id"]
    [event] = await events_of(admin, user_id=user_id)
    assert event.trace == f"trace-{unique}" == created.headers["x-request-id"]

    stale = await raw.patch(
        f"{account_path}/issuers/{issuer.id}/users/{user_id}",
        json={"profile": {"name": "late"}},
        headers={"If-Match": '"1"'},
    )
    assert stale.status_code == 412
    assert await events_of(admin, user_id=user_id) == [event]


async def test_a_new_account_starts_its_log_with_account_created(
    other_account: dict[str, str], client_for: ClientFactory
) -> None:
    async with client_for(other_account["key_id"], other_account["key_secret"]) as other:
        first = await events_of(other, event_types="account.created,api-key.created")
    created = [
        e
        for e in first
        if e.subject and e.subject["id"] in (other_account["account_id"], other_account["key_id"])
    ]
    assert sorted(e.type for e in created) == ["account.created", "api-key.created"]
    for event in created:
        assert event.trigger == "system" and event.source == "authpi" and event.auth is None
