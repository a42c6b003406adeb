"""Webhooks through authpi-admin: CRUD with secrets shown once, validation (catalogue names, URLs,
settings), statuses and their events, keyset lists, isolation, scopes, and the fan-out that writes one
delivery row per subscribed webhook in the event's transaction (checked in the database)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import ForbiddenError, NotFoundError, PreconditionFailedError, ValidationError
from authpi_admin.generated.models import Event, Issuer

from tests.conftest import BACKENDS, skip_without_postgres
from tests.core.conftest import ClientFactory, KeyMaker, field_names
from tests.db_query import rows
from tests.harness import RunningServer, run_server

pytestmark = pytest.mark.anyio

URL = "https://hooks.example.com/authpi"
# Deliveries the tests look at stay owed: at most one early attempt (the sender of a later merge may
# try once), then an hour's wait.
SLOW_RETRY = {"max_attempts": 30, "initial_delay_seconds": 3600, "max_delay_seconds": 3600}


def body(unique: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"hook-{unique}",
        "url": URL,
        "auth": {"type": "signature"},
        "events": ["user.created"],
        "retry": SLOW_RETRY,
        **extra,
    }


async def webhook_events(admin: AuthPIAdmin, webhook_id: str) -> list[Event]:
    types = "webhook.created,webhook.updated,webhook.deleted,webhook.paused,webhook.resumed"
    found = [e async for e in admin.events.list_all(limit=100, event_types=types)]
    return [e for e in reversed(found) if e.subject and e.subject["id"] == webhook_id]


async def deliveries(server: RunningServer, webhook_id: str) -> list[dict[str, Any]]:
    columns = (
        "id, webhook_id, event_id, event_type, subject_key, status, attempt_budget, next_attempt_at, "
        "last_error, account_id"
    )
    found = await rows(
        server, f"SELECT {columns} FROM webhook_deliveries WHERE webhook_id = ? ORDER BY id", webhook_id
    )
    names = [c.strip() for c in columns.split(",")]
    return [dict(zip(names, row, strict=True)) for row in found]


async def test_create_shows_the_secret_once(
    admin: AuthPIAdmin, raw: httpx.AsyncClient, account_path: str, server: RunningServer, unique: str
) -> None:
    created = await raw.post(
        f"{account_path}/webhooks",
        json=body(unique, description="CRM sync", metadata={"team": "crm"}),
    )
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    secret = data["signature_secret_plain"]
    assert data["id"].startswith("wh_") and len(data["id"]) == 29
    assert data["account_id"] == server.account_id and data["status"] == "active"
    assert data["auth"] == {
        "type": "signature",
        "signature_algorithm": "hmac-sha256",
        "signature_secret_hint": secret[-4:],
        "signature_secret_plain": secret,
    }
    assert "bearer_token_plain" not in data
    assert secret.startswith("whs_") and len(base64.b64decode(secret.removeprefix("whs_"))) == 32
    assert data["retry"] == SLOW_RETRY
    assert data["circuit_breaker"] == {"enabled": True, "failure_threshold": 20, "probe_interval_seconds": 60}
    assert data["subjects"] is None and data["metadata"] == {"team": "crm"}
    assert created.headers["etag"] == f'"{data["updated_at"]}"'
    wid = data["id"]

    fetched = await raw.get(f"{account_path}/webhooks/{wid}")
    assert fetched.status_code == 200 and secret not in fetched.text and "plain" not in fetched.text
    assert fetched.json()["data"]["auth"] == {
        "type": "signature",
        "signature_algorithm": "hmac-sha256",
        "signature_secret_hint": secret[-4:],
    }
    listed = await raw.get(f"{account_path}/webhooks", params={"limit": 100})
    assert secret not in listed.text and "plain" not in listed.text
    [item] = [i for i in listed.json()["data"] if i["id"] == wid]
    assert item["auth_type"] == "signature" and item["description"] == "CRM sync"
    assert set(item) == {
        "id", "account_id", "status", "name", "description", "url", "auth_type", "events",
        "status_at", "status_reason", "status_by", "created_at", "updated_at",
    }  # fmt: skip

    sdk = await admin.webhooks.get(wid)
    assert sdk.name == f"hook-{unique}" and sdk.events == ["user.created"] and sdk.url == URL
    assert sdk.auth.model_extra == {
        "type": "signature",
        "signature_algorithm": "hmac-sha256",
        "signature_secret_hint": secret[-4:],
    }
    assert (await admin.webhook(wid).get()) == sdk

    [event] = await webhook_events(admin, wid)
    assert event.type == "webhook.created" and event.data and event.data["url"] == URL
    [[sealed]] = await rows(server, "SELECT signature_secret_sealed FROM webhooks WHERE id = ?", wid)
    assert sealed and secret not in sealed
    dumped = json.dumps(event.model_dump())
    assert secret not in dumped and sealed not in dumped and "sealed" not in dumped


async def test_bearer_tokens_and_regenerated_secrets(
    admin: AuthPIAdmin, raw: httpx.AsyncClient, account_path: str, server: RunningServer, unique: str
) -> None:
    created = await admin.webhooks.create(body(unique, auth={"type": "bearer+signature"}))
    auth = created.auth.model_extra or {}
    signature, bearer = auth["signature_secret_plain"], auth["bearer_token_plain"]
    assert bearer.startswith("whb_") and len(bearer) > 40
    assert auth["bearer_token_hint"] == bearer[-4:] and auth["signature_secret_hint"] == signature[-4:]
    path = f"{account_path}/webhooks/{created.id}"

    plain = await raw.patch(path, json={"name": "renamed"})
    assert plain.status_code == 200 and "plain" not in plain.text

    again = await raw.patch(path, json={"auth": {"regenerate_signature_secret": True}})
    data = again.json()["data"]
    new_signature = data["signature_secret_plain"]
    assert new_signature != signature and data["auth"]["signature_secret_plain"] == new_signature
    assert "bearer_token_plain" not in data and data["auth"]["bearer_token_hint"] == bearer[-4:]
    assert data["auth"]["signature_secret_hint"] == new_signature[-4:]

    rotated = await admin.webhook(created.id).update({"auth": {"regenerate_bearer_token": True}})
    new_bearer = (rotated.auth.model_extra or {})["bearer_token_plain"]
    assert new_bearer != bearer

    none = await raw.patch(path, json={"auth": {"type": "none"}})
    assert none.json()["data"]["auth"] == {"type": "none"}
    [[sealed_signature, sealed_bearer]] = await rows(
        server, "SELECT signature_secret_sealed, bearer_token_sealed FROM webhooks WHERE id = ?", created.id
    )
    assert sealed_signature is None and sealed_bearer is None
    # Switching to a type that needs a secret generates it, shown in that answer only.
    back = await raw.patch(path, json={"auth": {"type": "bearer"}})
    back_data = back.json()["data"]
    assert back_data["bearer_token_plain"].startswith("whb_")
    assert "signature_secret_plain" not in back_data and back_data["auth"]["type"] == "bearer"

    for wrong in (
        {"auth": {"regenerate_signature_secret": True}},  # a bearer webhook has no signature secret
        {"auth": {"type": "basic"}},
        {"auth": {"signature_algorithm": "md5"}},
        {"auth": {"bearer_token": "mine"}},
        {"auth": None},
    ):
        refused = await raw.patch(path, json=wrong)
        assert refused.status_code == 400, (wrong, refused.text)
        assert refused.json()["error"] == "invalid_request" and refused.json()["fields"]

    history = [e.type for e in await webhook_events(admin, created.id)]
    assert history == ["webhook.created"] + ["webhook.updated"] * 5
    dumped = json.dumps([e.model_dump() for e in await webhook_events(admin, created.id)])
    for value in (signature, bearer, new_signature, new_bearer, back_data["bearer_token_plain"]):
        assert value not in dumped


async def test_if_match_and_idempotent_create(
    admin: AuthPIAdmin, raw: httpx.AsyncClient, account_path: str, unique: str
) -> None:
    key = f"create-{unique}"
    first = await raw.post(f"{account_path}/webhooks", json=body(unique), headers={"Idempotency-Key": key})
    replay = await raw.post(f"{account_path}/webhooks", json=body(unique), headers={"Idempotency-Key": key})
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    wid = first.json()["data"]["id"]
    named = [w async for w in admin.webhooks.list_all(limit=100) if w.name == f"hook-{unique}"]
    assert [w.id for w in named] == [wid]

    stale = first.headers["etag"]
    updated = await admin.webhook(wid).update({"description": "v2"}, if_match=stale)
    assert updated._etag and updated._etag != stale
    with pytest.raises(PreconditionFailedError):
        await admin.webhook(wid).update({"description": "v3"}, if_match=stale)
    with pytest.raises(PreconditionFailedError):
        await admin.webhook(wid).delete(if_match=stale)
    assert (await admin.webhooks.get(wid)).description == "v2"

    patch_key = f"patch-{unique}"
    path = f"{account_path}/webhooks/{wid}"
    regen = {"auth": {"regenerate_signature_secret": True}}
    one = await raw.patch(path, json=regen, headers={"Idempotency-Key": patch_key})
    two = await raw.patch(path, json=regen, headers={"Idempotency-Key": patch_key})
    assert one.json() == two.json() and one.json()["data"]["signature_secret_plain"]
    current = await admin.webhooks.get(wid)
    assert current._etag != updated._etag  # the regeneration moved the version
    await admin.webhook(wid).delete(if_match=current._etag)
    with pytest.raises(NotFoundError):
        await admin.webhooks.get(wid)


async def test_event_names_are_exact_catalogue_names(
    admin: AuthPIAdmin, raw: httpx.AsyncClient, account_path: str, unique: str
) -> None:
    events = ["user.created", "user.*", "user.created", "nope", "webhook.paused"]
    refused = await raw.post(f"{account_path}/webhooks", json=body(unique, events=events))
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_request"
    assert field_names(refused.json()["fields"]) == {"events.1", "events.3"}
    with pytest.raises(ValidationError) as exc:
        await admin.webhooks.create(body(unique, events=["*"]))
    assert field_names(exc.value.fields) == {"events.0"}
    for bad in ([], None, "user.created", ["user.created"] * 107):
        answer = await raw.post(f"{account_path}/webhooks", json=body(unique, events=bad))
        assert answer.status_code == 400 and field_names(answer.json()["fields"]) == {"events"}, bad

    kept = await admin.webhooks.create(
        body(unique, events=[e for i, e in enumerate(events) if i in (0, 2, 4)])
    )
    assert kept.events == ["user.created", "webhook.paused"]
    from authpi.services.event_types import EVENT_TYPES

    every = await admin.webhooks.create(body(unique, events=sorted(EVENT_TYPES)))
    assert len(every.events) == 106
    with pytest.raises(ValidationError) as exc:
        await admin.webhook(kept.id).update({"events": ["user.created", "user.exploded"]})
    assert field_names(exc.value.fields) == {"events.1"}


PRIVATE_URLS = [
    "http://127.0.0.1:8080/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/hook",
    "http://[fd00::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://2130706433/hook",
    "http://127.1/hook",
    "http://localhost:9000/hook",
    "http://api.localhost/hook",
]


async def test_urls_are_http_without_credentials_and_not_private(
    raw: httpx.AsyncClient, account_path: str, server: RunningServer, unique: str
) -> None:
    assert server.env.get("AUTHPI_ALLOW_PRIVATE_NETWORKS", "false") == "false"
    bad = [
        "ftp://hooks.example.com/x",
        "javascript:alert(1)",
        "hooks.example.com/x",
        "https://",
        "https://user:pw@hooks.example.com/x",
        "https://token@hooks.example.com/x",
        "https://hooks.example.com:99999/x",
        "https://hooks.example.com/a b",
        "https://hooks.example.com/" + "a" * 2030,
        "",
        *PRIVATE_URLS,
    ]
    for url in bad:
        answer = await raw.post(f"{account_path}/webhooks", json=body(unique, url=url))
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["error"] == "invalid_request" and field_names(answer.json()["fields"]) == {"url"}
    for url in ("http://hooks.example.com/x", "https://8.8.8.8:8443/x", "https://[2606:4700::1111]/x"):
        answer = await raw.post(f"{account_path}/webhooks", json=body(unique, url=url))
        assert answer.status_code == 201, (url, answer.text)
    wid = answer.json()["data"]["id"]
    patched = await raw.patch(f"{account_path}/webhooks/{wid}", json={"url": "http://127.0.0.1/x"})
    assert patched.status_code == 400 and field_names(patched.json()["fields"]) == {"url"}


async def test_settings_are_validated_and_defaulted(
    admin: AuthPIAdmin, raw: httpx.AsyncClient, account_path: str, issuer: Issuer, unique: str
) -> None:
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"retry": {"max_attempts": 0}}, {"retry.max_attempts"}),
        ({"retry": {"max_attempts": 31, "backoff": "linear"}}, {"retry.max_attempts", "retry.backoff"}),
        ({"retry": {"initial_delay_seconds": True}}, {"retry.initial_delay_seconds"}),
        ({"retry": {"initial_delay_seconds": 60, "max_delay_seconds": 10}}, {"retry.max_delay_seconds"}),
        ({"retry": {"max_delay_seconds": 86401}}, {"retry.max_delay_seconds"}),
        ({"circuit_breaker": {"enabled": "yes"}}, {"circuit_breaker.enabled"}),
        ({"circuit_breaker": {"probe_interval_seconds": 1}}, {"circuit_breaker.probe_interval_seconds"}),
        (
            {"circuit_breaker": {"failure_threshold": 1001, "x": 1}},
            {"circuit_breaker.failure_threshold", "circuit_breaker.x"},
        ),
        ({"subjects": [{"type": "user"}]}, {"subjects.0"}),
        ({"subjects": [{"type": "user", "id": "u", "extra": 1}]}, {"subjects.0"}),
        ({"subjects": [{"type": "", "id": "u"}]}, {"subjects.0.type"}),
        ({"subjects": [{"type": "user", "id": "u" * 129}]}, {"subjects.0.id"}),
        ({"subjects": [{"type": "user", "id": "u"}] * 101}, {"subjects"}),
        ({"auth": {"type": "hmac"}}, {"auth.type"}),
        ({"auth": {"type": "signature", "signature_secret": "whs_mine"}}, {"auth.signature_secret"}),
        ({"auth": {"regenerate_bearer_token": True}}, {"auth.regenerate_bearer_token"}),
        ({"status": "failing"}, {"status"}),
        ({"name": ""}, {"name"}),
        ({"colour": "blue"}, {"colour"}),
    ]
    for change, fields in cases:
        answer = await raw.post(f"{account_path}/webhooks", json={**body(unique), **change})
        assert answer.status_code == 400, (change, answer.text)
        assert field_names(answer.json()["fields"]) == fields, (change, answer.json())

    minimal = {"name": f"min-{unique}", "url": URL, "auth": {}, "events": ["user.created"]}
    made = await admin.webhooks.create(minimal)
    assert made.retry == {"max_attempts": 10, "initial_delay_seconds": 5, "max_delay_seconds": 3600}
    assert (made.auth.model_extra or {})["type"] == "signature"
    subjects = [
        {"type": "issuer", "id": issuer.id},
        {"type": "issuer", "id": issuer.id},
        {"type": "user", "id": "u1"},
    ]
    changed = await admin.webhook(made.id).update(
        {"retry": {"max_attempts": 3}, "circuit_breaker": {"enabled": False}, "subjects": subjects}
    )
    assert changed.retry == {"max_attempts": 3, "initial_delay_seconds": 5, "max_delay_seconds": 3600}
    assert changed.circuit_breaker == {
        "enabled": False,
        "failure_threshold": 20,
        "probe_interval_seconds": 60,
    }
    assert changed.subjects == subjects[1:]
    merged = await admin.webhook(made.id).update({"retry": {"initial_delay_seconds": 7}})
    assert merged.retry == {"max_attempts": 3, "initial_delay_seconds": 7, "max_delay_seconds": 3600}
    reset = await admin.webhook(made.id).update({"retry": None, "subjects": []})
    assert reset.retry == {"max_attempts": 10, "initial_delay_seconds": 5, "max_delay_seconds": 3600}
    assert reset.subjects is None
    for nulled in ({"name": None}, {"url": None}, {"events": None}, {"events": []}):
        answer = await raw.patch(f"{account_path}/webhooks/{made.id}", json=nulled)
        assert answer.status_code == 400, (nulled, answer.text)


async def test_statuses_and_their_events(
    admin: AuthPIAdmin, raw: httpx.AsyncClient, account_path: str, server: RunningServer, unique: str
) -> None:
    wh = await admin.webhooks.create(body(unique))
    paused = await admin.webhook(wh.id).update(
        {"status": "disabled", "status_reason": "maintenance", "status_by": "ops"}
    )
    assert paused.status == "disabled" and paused.status_reason == "maintenance" and paused.status_by == "ops"
    assert paused.status_at and paused.status_at >= wh.created_at
    resumed = await admin.webhook(wh.id).update({"status": "active"})
    assert resumed.status == "active" and resumed.status_reason is None
    await admin.webhook(wh.id).update({"status": "active", "name": "same status"})
    refused = await raw.patch(f"{account_path}/webhooks/{wh.id}", json={"status": "deleted"})
    assert refused.status_code == 400

    disabled = await admin.webhooks.create(body(unique, status="disabled"))
    assert disabled.status == "disabled"
    assert [w.id async for w in admin.webhooks.list_all(status="disabled")].count(disabled.id) == 1
    assert wh.id not in [w.id async for w in admin.webhooks.list_all(status="disabled")]

    await admin.webhook(wh.id).delete()
    with pytest.raises(NotFoundError):
        await admin.webhook(wh.id).get()
    with pytest.raises(NotFoundError):
        await admin.webhook(wh.id).update({"name": "ghost"})
    with pytest.raises(NotFoundError):
        await admin.webhook(wh.id).delete()
    assert wh.id not in [w.id async for w in admin.webhooks.list_all()]
    [gone] = [w async for w in admin.webhooks.list_all(status="deleted") if w.id == wh.id]
    assert gone.status == "deleted" and gone.status_at
    assert {w.status async for w in admin.webhooks.list_all(status="deleted")} == {"deleted"}
    bad_filter = await raw.get(f"{account_path}/webhooks", params={"status": "paused"})
    assert bad_filter.status_code == 400

    history = await webhook_events(admin, wh.id)
    assert [e.type for e in history] == [
        "webhook.created",
        "webhook.paused",
        "webhook.resumed",
        "webhook.updated",
        "webhook.deleted",
    ]
    for event in history:
        assert event.trigger == "api" and event.auth and event.auth["key_id"] == server.key_id
        assert event.subject == {"type": "webhook", "id": wh.id}
    assert history[1].data and history[1].data["status"] == "disabled"
    assert history[-1].data and history[-1].data["status"] == "deleted"


async def test_list_pages_newest_first(admin: AuthPIAdmin, server: RunningServer, unique: str) -> None:
    made = [await admin.webhooks.create(body(f"{unique}-{i}")) for i in range(5)]
    everything = [w.id async for w in admin.webhooks.list_all(limit=100)]
    assert everything == sorted(everything, reverse=True)
    mine = [w.id for w in made]
    assert [i for i in everything if i in mine] == list(reversed(mine))
    paged: list[str] = []
    cursor = None
    while True:
        page = await admin.webhooks.list(limit=2, cursor=cursor)
        assert len(page.data) <= 2
        paged.extend(w.id for w in page.data)
        if not page.has_more:
            assert page.next_cursor is None
            break
        assert page.next_cursor == page.data[-1].id
        cursor = page.next_cursor
    assert paged == everything
    start = await admin.webhooks.list(limit=3, cursor=mine[3])
    assert [w.id for w in start.data][:3] == [i for i in everything if i < mine[3]][:3]


async def test_another_accounts_webhooks_do_not_exist(
    admin: AuthPIAdmin, other_account: dict[str, str], client_for: ClientFactory, unique: str
) -> None:
    mine = await admin.webhooks.create(body(unique))
    async with client_for(other_account["key_id"], other_account["key_secret"]) as other:
        for call in (
            other.webhooks.get(mine.id),
            other.webhook(mine.id).update({"name": "taken"}),
            other.webhook(mine.id).delete(),
        ):
            with pytest.raises(NotFoundError):
                await call
        assert mine.id not in [w.id async for w in other.webhooks.list_all()]
        theirs = await other.webhooks.create(body(unique))
    with pytest.raises(NotFoundError):
        await admin.webhooks.get(theirs.id)
    assert (await admin.webhooks.get(mine.id)).name == f"hook-{unique}"


async def test_scopes(admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory, unique: str) -> None:
    existing = await admin.webhooks.create(body(unique))
    reader = await make_key(["webhooks:read"])
    async with client_for(reader.id, reader.secret_plain) as client:
        assert (await client.webhooks.get(existing.id)).id == existing.id
        assert (await client.webhooks.list(limit=1)).data
        for call in (
            client.webhooks.create(body(unique)),
            client.webhook(existing.id).update({"name": "no"}),
            client.webhook(existing.id).delete(),
        ):
            with pytest.raises(ForbiddenError):
                await call
    manager = await make_key(["webhooks:manage"])
    async with client_for(manager.id, manager.secret_plain) as client:
        made = await client.webhooks.create(body(unique))
        assert (await client.webhooks.get(made.id)).id == made.id
        await client.webhook(made.id).delete()
    stranger = await make_key(["events:read"])
    async with client_for(stranger.id, stranger.secret_plain) as client:
        with pytest.raises(ForbiddenError):
            await client.webhooks.list()


async def test_fan_out_writes_one_delivery_per_subscribed_webhook(
    admin: AuthPIAdmin, server: RunningServer, issuer: Issuer, unique: str
) -> None:
    other_issuer = await admin.issuers.create({"name": f"other-{unique}"})
    users = admin.issuer(issuer.id).users

    def hook(name: str, **extra: Any) -> Any:
        return admin.webhooks.create(body(f"{unique}-{name}", **extra))

    everything = await hook(
        "all", events=["user.created", "user.updated"], retry={**SLOW_RETRY, "max_attempts": 7}
    )
    by_issuer = await hook("issuer", subjects=[{"type": "issuer", "id": issuer.id}])
    elsewhere = await hook("elsewhere", subjects=[{"type": "issuer", "id": other_issuer.id}])
    paused = await hook("paused", status="disabled")
    clients_only = await hook("clients", events=["client.created"])
    deleted = await hook("deleted")
    await admin.webhook(deleted.id).delete()

    user = await users.create({"username_type": "unique-name", "username": f"fan-{unique}"})
    [created_event] = [e async for e in admin.events.list_all(user_id=user.id)]
    await users.update(user.id, {"profile": {"name": "Fan"}})
    [updated_event] = [e async for e in admin.events.list_all(user_id=user.id, event_types="user.updated")]

    got = await deliveries(server, everything.id)
    assert [(d["event_id"], d["event_type"]) for d in got] == [
        (created_event.id, "user.created"),
        (updated_event.id, "user.updated"),
    ]
    for row in got:
        assert row["id"].startswith("dlv_") and row["account_id"] == server.account_id
        assert row["subject_key"] == f"user:{user.id}" and row["attempt_budget"] == 7
        assert row["status"] in ("pending", "retrying") and row["next_attempt_at"] is not None
    [issuer_row] = await deliveries(server, by_issuer.id)
    assert issuer_row["event_id"] == created_event.id and issuer_row["attempt_budget"] == 30
    for silent in (elsewhere, paused, clients_only, deleted):
        assert await deliveries(server, silent.id) == [], silent.name

    # A subject filter naming the event's own subject matches too, and resuming starts deliveries.
    await admin.webhook(elsewhere.id).update({"subjects": [{"type": "user", "id": user.id}]})
    await admin.webhook(paused.id).update({"status": "active"})
    await users.create({"username_type": "unique-name", "username": f"fan2-{unique}"})
    await users.update(user.id, {"profile": {"name": "Fan again"}})
    assert [
        d["event_type"] for d in await deliveries(server, elsewhere.id)
    ] == []  # user.updated not subscribed
    assert [d["event_type"] for d in await deliveries(server, paused.id)] == ["user.created"]
    await admin.webhook(elsewhere.id).update({"events": ["user.updated"]})
    await users.update(user.id, {"profile": {"name": "Fan thrice"}})
    assert [d["subject_key"] for d in await deliveries(server, elsewhere.id)] == [f"user:{user.id}"]
    assert len(await deliveries(server, everything.id)) == 5

    # Deleting a webhook fails what it was still owed.
    await admin.webhook(everything.id).delete()
    after = await deliveries(server, everything.id)
    assert len(after) == 5
    assert all(d["status"] == "failed" and d["last_error"] == "webhook deleted" for d in after), after
    assert all(d["next_attempt_at"] is None for d in after)


@pytest.fixture(scope="module", params=BACKENDS)
def private_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """Two worker processes that may call private addresses."""
    skip_without_postgres(request.param)
    with run_server(request.param, {"AUTHPI_ALLOW_PRIVATE_NETWORKS": "true"}, workers=2) as running:
        yield running


async def test_private_addresses_allowed_by_the_setting(private_server: RunningServer) -> None:
    async with AuthPIAdmin(api_key=private_server.api_key, base_url=private_server.url) as admin:
        for url in PRIVATE_URLS:
            made = await admin.webhooks.create(body(uuid.uuid4().hex[:8], url=url))
            assert made.url == url
        for url in ("ftp://127.0.0.1/x", "http://user:pw@127.0.0.1/x"):
            with pytest.raises(ValidationError):
                await admin.webhooks.create(body("x", url=url))


async def test_a_webhook_gets_events_of_every_worker_at_once(private_server: RunningServer) -> None:
    """Each round opens new connections, so requests land on either worker: a webhook created by one
    receives the event another emits right after."""
    for round_ in range(8):
        async with AuthPIAdmin(api_key=private_server.api_key, base_url=private_server.url) as admin:
            made = await admin.webhooks.create(body(f"w{round_}", events=["issuer.created"]))
        async with AuthPIAdmin(api_key=private_server.api_key, base_url=private_server.url) as admin:
            issuer = await admin.issuers.create({"name": f"round {round_}"})
        [row] = await deliveries(private_server, made.id)
        assert row["subject_key"] == f"issuer:{issuer.id}"
        async with AuthPIAdmin(api_key=private_server.api_key, base_url=private_server.url) as admin:
            await admin.webhook(made.id).update({"status": "disabled"})


async def test_subscription_changes_reach_every_worker_at_once(private_server: RunningServer) -> None:
    """Workers keep the subscriptions they last read and trust them only while the account's
    subscription version (raised by database triggers) is unchanged: every change below, made
    through one connection, is obeyed by the next event whichever worker emits it."""

    async def admin_call(action: Callable[[AuthPIAdmin], Awaitable[Any]]) -> Any:
        async with AuthPIAdmin(api_key=private_server.api_key, base_url=private_server.url) as admin:
            return await action(admin)

    made = await admin_call(lambda a: a.webhooks.create(body("versioned", events=["issuer.created"])))
    expected = 0

    async def new_issuer(delivered: bool) -> None:
        nonlocal expected
        issuer = await admin_call(lambda a: a.issuers.create({"name": "versioned"}))
        expected += delivered
        rows = await deliveries(private_server, made.id)
        assert len(rows) == expected, (issuer.id, rows)
        if delivered:
            assert f"issuer:{issuer.id}" in [row["subject_key"] for row in rows]

    for _ in range(3):
        for _ in range(2):  # both workers read (and keep) the current subscriptions
            await new_issuer(True)
        await admin_call(lambda a: a.webhook(made.id).update({"events": ["user.created"]}))
        await new_issuer(False)
        await admin_call(lambda a: a.webhook(made.id).update({"events": ["issuer.created"]}))
        await new_issuer(True)
        await admin_call(lambda a: a.webhook(made.id).update({"status": "disabled"}))
        await new_issuer(False)
        await admin_call(lambda a: a.webhook(made.id).update({"status": "active"}))
        await new_issuer(True)
    await admin_call(lambda a: a.webhook(made.id).delete())
    await new_issuer(False)
