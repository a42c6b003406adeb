"""Webhook delivery end to end: the real server sends to a real HTTP receiver in this process.

Every request is checked against both signature schemes (by hand and with ``standardwebhooks``);
a scripted session of activity arrives exactly as the events API lists it, in order per subject; a
receiver that fails (500, then silence past the timeout) gets everything once it recovers, and the
deliveries API tells that story; the circuit breaker pauses and resumes the webhook with its
events; redelivery of one delivery and of every failed one."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import ForbiddenError, PreconditionFailedError

from authpi.services.event_types import EVENT_TYPES
from authpi.services.outbound_addresses import is_public
from tests.conftest import BACKENDS, skip_without_postgres
from tests.core.conftest import ClientFactory, KeyMaker
from tests.core.webhook_receiver import Receipt, eventually, receiving, verify
from tests.harness import RunningServer, run_server

pytestmark = pytest.mark.anyio

ALL_TYPES = sorted(EVENT_TYPES)
FAST_RETRY = {"max_attempts": 30, "initial_delay_seconds": 1, "max_delay_seconds": 1}
NO_BREAKER = {"enabled": False}
PASSWORD = "Correct-Horse-Battery-9"


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server that may reach 127.0.0.1 (the receiver), with a 1 s attempt timeout."""
    skip_without_postgres(request.param)
    env = {
        "AUTHPI_ALLOW_PRIVATE_NETWORKS": "true",
        "AUTHPI_WEBHOOK_TIMEOUT": "1",
        "AUTHPI_WEBHOOK_POLL_INTERVAL": "0.2",
    }
    with run_server(request.param, extra_env=env) as running:
        yield running


async def create_hook(raw: httpx.AsyncClient, account_path: str, url: str, **fields: Any) -> dict[str, Any]:
    body = {"name": "receiver", "url": url, "auth": {"type": "signature"}, "events": ALL_TYPES, **fields}
    answer = await raw.post(f"{account_path}/webhooks", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()["data"]
    return created


async def delete_hook(raw: httpx.AsyncClient, account_path: str, hook: dict[str, Any]) -> None:
    answer = await raw.delete(f"{account_path}/webhooks/{hook['id']}")
    assert answer.status_code == 204, answer.text


async def deliveries(admin: AuthPIAdmin, webhook_id: str, **filters: Any) -> list[Any]:
    return [d async for d in admin.webhook(webhook_id).deliveries.list_all(limit=100, **filters)]


def by_subject(receipts: list[Receipt]) -> dict[str, list[str]]:
    """Event IDs in the order they arrived, per event subject."""
    order: dict[str, list[str]] = defaultdict(list)
    for receipt in receipts:
        subject = receipt.event["subject"]
        order[f"{subject['type']}:{subject['id']}"].append(receipt.event_id)
    return order


def assert_in_order_per_subject(receipts: list[Receipt]) -> None:
    """Per subject, no event arrives before an earlier one is done with (retries repeat an event,
    but never go back to it after a later one)."""
    for subject, event_ids in by_subject(receipts).items():
        assert event_ids == sorted(event_ids), subject


async def activity(admin: AuthPIAdmin, issuer_id: str, unique: str) -> None:
    """A scripted session: users created, changed, suspended, deleted; a client's life."""
    users = []
    for n in range(3):
        users.append(
            await admin.issuer(issuer_id).users.create(
                {"username_type": "unique-name", "username": f"wh-{unique}-{n}", "password": PASSWORD}
            )
        )
    for n, user in enumerate(users):
        await admin.issuer(issuer_id).users.update(user.id, {"profile": {"name": f"User {n}"}})
    await admin.issuer(issuer_id).users.update(users[0].id, {"status": "suspended"})
    await admin.issuer(issuer_id).users.delete(users[1].id)
    web = {"name": "web", "settings": {"openid": {"redirect_uris": ["https://app.example.com/cb"]}}}
    client = await admin.issuer(issuer_id).clients.create(web)  # type: ignore[arg-type]
    await admin.issuer(issuer_id).clients.update(client.id, {"name": "web app"})
    await admin.issuer(issuer_id).clients.rotate_secret(client.id)
    await admin.issuers.update(issuer_id, {"description": "changed"})


async def test_a_scripted_session_arrives_signed_exactly_as_the_events_api_lists_it(
    admin: AuthPIAdmin, raw: httpx.AsyncClient, account_path: str, unique: str
) -> None:
    async with receiving() as rx:
        issuer = await admin.issuers.create({"name": f"wh-{unique}"})
        hook = await create_hook(
            raw,
            account_path,
            rx.url,
            auth={"type": "bearer+signature"},
            subjects=[{"type": "issuer", "id": issuer.id}],
        )
        secret, bearer = hook["signature_secret_plain"], hook["bearer_token_plain"]
        assert secret.startswith("whs_") and bearer.startswith("whb_")
        await asyncio.sleep(0.01)
        await activity(admin, issuer.id, unique)

        listed = [e async for e in admin.events.list_all(limit=100, issuer_id=issuer.id)]
        expected = [e for e in reversed(listed) if e.timestamp > hook["created_at"]]
        assert len(expected) >= 12

        async def all_arrived() -> bool:
            return len(rx.receipts) >= len(expected)

        await eventually(all_arrived, timeout=30)
        await asyncio.sleep(0.5)  # nothing more (no duplicates) may come
        assert sorted(r.event_id for r in rx.receipts) == sorted(e.id for e in expected)
        for receipt in rx.receipts:
            verify(receipt, secret, bearer)
        # The body is the event exactly as GET /events/{id} shows it.
        for receipt in rx.receipts:
            shown = await raw.get(f"{account_path}/events/{receipt.event_id}")
            assert shown.json()["data"] == receipt.event
        assert_in_order_per_subject(rx.receipts)
        stored = await deliveries(admin, hook["id"])
        assert {d.event_id for d in stored} == {e.id for e in expected}
        for delivery in stored:
            assert (delivery.status, delivery.attempt_count) == ("succeeded", 1), delivery
            assert delivery.last_response_status == 200 and delivery.last_error is None
            assert delivery.next_attempt_at is None and delivery.retry_workflow_id is None
            assert delivery.first_attempted_at == delivery.last_attempted_at
        await delete_hook(raw, account_path, hook)


async def test_a_receiver_that_fails_then_times_out_then_recovers_gets_everything_in_order(
    admin: AuthPIAdmin, raw: httpx.AsyncClient, account_path: str, unique: str
) -> None:
    async with receiving() as rx:
        issuer = await admin.issuers.create({"name": f"down-{unique}"})
        hook = await create_hook(
            raw,
            account_path,
            rx.url,
            subjects=[{"type": "issuer", "id": issuer.id}],
            retry=FAST_RETRY,
            circuit_breaker=NO_BREAKER,
        )
        rx.answer = 500
        await asyncio.sleep(0.01)
        await activity(admin, issuer.id, unique)
        listed = [e async for e in admin.events.list_all(limit=100, issuer_id=issuer.id)]
        expected = {e.id for e in listed if e.timestamp > hook["created_at"]}

        async def story(status: str, error: str, response: int | None) -> bool:
            return any(
                d.status == status
                and d.last_error
                and error in d.last_error
                and d.last_response_status == response
                for d in await deliveries(admin, hook["id"])
            )

        await eventually(lambda: story("retrying", "HTTP 500: receiver says no", 500), timeout=30)
        rx.answer = "hang"
        await eventually(lambda: story("retrying", "timed out after 1 s", None), timeout=30)
        rx.answer = 200

        async def delivered() -> bool:
            return rx.delivered_ids() == expected

        await eventually(delivered, timeout=90)
        await asyncio.sleep(0.5)
        assert_in_order_per_subject(rx.receipts)
        sent = defaultdict(int)
        for receipt in rx.receipts:
            sent[receipt.event_id] += 1
        stored = await deliveries(admin, hook["id"])
        assert {d.event_id for d in stored} == expected
        for delivery in stored:
            assert delivery.status == "succeeded" and delivery.last_response_status == 200
            # Every attempt the API counts reached the receiver, and no other.
            assert delivery.attempt_count == sent[delivery.event_id], delivery
        assert max(d.attempt_count for d in stored) >= 3
        assert [d for d in stored if d.status == "succeeded"] == stored
        assert await deliveries(admin, hook["id"], status="retrying") == []
        await delete_hook(raw, account_path, hook)


async def test_the_circuit_breaker_pauses_the_webhook_and_a_probe_resumes_it(
    admin: AuthPIAdmin, raw: httpx.AsyncClient, account_path: str, unique: str
) -> None:
    async with receiving() as rx:
        issuer = await admin.issuers.create({"name": f"breaker-{unique}"})
        hook = await create_hook(
            raw,
            account_path,
            rx.url,
            subjects=[{"type": "issuer", "id": issuer.id}],
            retry=FAST_RETRY,
            circuit_breaker={"enabled": True, "failure_threshold": 3, "probe_interval_seconds": 5},
        )
        rx.answer = 503
        await admin.issuers.update(issuer.id, {"description": "one"})

        async def status_is(status: str) -> bool:
            return (await admin.webhooks.get(hook["id"])).status == status

        await eventually(lambda: status_is("failing"), timeout=30)
        paused = await admin.webhooks.get(hook["id"])
        assert paused.status_reason == "circuit breaker: 3 consecutive failures"
        await admin.issuers.update(issuer.id, {"description": "two"})  # queues up behind the breaker
        attempts = len(rx.receipts)
        await asyncio.sleep(2)
        assert len(rx.receipts) == attempts  # nothing is sent before the probe is due
        rx.answer = 200
        await eventually(lambda: status_is("active"), timeout=30)
        events = [
            e
            async for e in admin.events.list_all(limit=100, event_types="webhook.paused,webhook.resumed")
            if e.subject and e.subject["id"] == hook["id"]
        ]
        assert [(e.type, e.trigger) for e in reversed(events)] == [
            ("webhook.paused", "system"),
            ("webhook.resumed", "system"),
        ]
        for event in events:
            assert "signature_secret_sealed" not in (event.data or {})
            assert "bearer_token_sealed" not in (event.data or {})

        async def both_delivered() -> bool:
            return len(rx.delivered_ids()) == 2

        await eventually(both_delivered, timeout=30)
        assert_in_order_per_subject(rx.receipts)
        await delete_hook(raw, account_path, hook)


async def test_redeliver_one_delivery_and_every_failed_one(
    admin: AuthPIAdmin,
    raw: httpx.AsyncClient,
    account_path: str,
    unique: str,
    make_key: KeyMaker,
    client_for: ClientFactory,
) -> None:
    async with receiving() as rx:
        issuer = await admin.issuers.create({"name": f"redeliver-{unique}"})
        hook = await create_hook(
            raw,
            account_path,
            rx.url,
            subjects=[{"type": "issuer", "id": issuer.id}],
            retry={"max_attempts": 1, "initial_delay_seconds": 1, "max_delay_seconds": 1},
            circuit_breaker=NO_BREAKER,
        )
        rx.answer = 500
        for n in range(3):
            await admin.issuers.update(issuer.id, {"description": f"v{n}"})

        async def all_failed() -> bool:
            found = await deliveries(admin, hook["id"], status="failed")
            return len(found) == 3

        await eventually(all_failed, timeout=30)
        first, second, third = sorted(await deliveries(admin, hook["id"]), key=lambda d: d.event_id)
        assert (first.attempt_count, first.last_response_status, first.next_attempt_at) == (1, 500, None)

        wh = admin.webhook(hook["id"])
        again = await wh.deliveries.redeliver(first.id)
        assert again.success is False
        assert (again.status, again.attempt_count, again.last_response_status) == ("failed", 2, 500)
        with pytest.raises(PreconditionFailedError):
            await wh.deliveries.redeliver(first.id, if_match='"1"')
        rx.answer = 200
        etag = getattr(again, "_etag", None)
        assert etag
        done = await wh.deliveries.redeliver(first.id, if_match=etag)
        assert done.success is True
        assert (done.status, done.attempt_count, done.last_response_status) == ("succeeded", 3, 200)
        assert done.last_error is None and rx.delivered_ids() == {first.event_id}

        # A key that may only read lists deliveries but cannot redeliver.
        reader = await make_key(["webhooks:read"])
        async with client_for(reader.id, reader.secret_plain) as limited:
            assert len([d async for d in limited.webhook(hook["id"]).deliveries.list_all()]) == 3
            with pytest.raises(ForbiddenError):
                await limited.webhook(hook["id"]).deliveries.redeliver(second.id)
            with pytest.raises(ForbiddenError):
                await limited.webhook(hook["id"]).redeliver.create({"status": "failed"})

        answer = await wh.redeliver.create({"status": "failed"})
        assert answer["redelivered"] == 2 and answer["has_more"] is False

        async def rest_delivered() -> bool:
            return rx.delivered_ids() == {first.event_id, second.event_id, third.event_id}

        await eventually(rest_delivered, timeout=30)
        stored = {d.id: d for d in await deliveries(admin, hook["id"])}
        assert stored[second.id].status == "succeeded" and stored[second.id].attempt_count == 2
        assert stored[second.id].attempt_budget == 2  # the one attempt made, plus a fresh budget of 1
        assert (await wh.redeliver.create({"status": "failed"}))["redelivered"] == 0

        # Filters of the list.
        assert {d.id for d in await deliveries(admin, hook["id"], event_type="issuer.updated")} == set(stored)
        assert await deliveries(admin, hook["id"], event_type="user.created") == []
        assert await deliveries(admin, hook["id"], before=first.created_at) == []
        assert len(await deliveries(admin, hook["id"], after=first.created_at - 1)) == 3
        page = await wh.deliveries.list(limit=2)
        assert len(page.data) == 2 and page.has_more and page.next_cursor
        rest = await wh.deliveries.list(limit=2, cursor=page.next_cursor)
        assert [d.id for d in page.data + rest.data] == sorted(stored, reverse=True)
        bad = await raw.get(f"{account_path}/webhooks/{hook['id']}/deliveries", params={"status": "sent"})
        assert bad.status_code in (400, 422)
        bulk_bad = await raw.post(
            f"{account_path}/webhooks/{hook['id']}/redeliver", json={"status": "pending"}
        )
        assert bulk_bad.status_code in (400, 422)
        await delete_hook(raw, account_path, hook)
        gone = await raw.get(f"{account_path}/webhooks/{hook['id']}/deliveries")
        assert gone.status_code == 404


async def test_another_accounts_deliveries_do_not_exist(
    admin: AuthPIAdmin,
    raw: httpx.AsyncClient,
    account_path: str,
    server: RunningServer,
) -> None:
    made = server.cli("accounts", "create", "--name", "Other account")
    assert made.returncode == 0, made.stderr
    other_account: dict[str, str] = json.loads(made.stdout)
    hook = await create_hook(raw, account_path, "https://hooks.example.com/x", events=["user.created"])
    async with httpx.AsyncClient(
        base_url=server.url, auth=(other_account["key_id"], other_account["key_secret"])
    ) as other:
        theirs = f"/v1/accounts/{other_account['account_id']}/webhooks/{hook['id']}"
        for answer in (
            await other.get(f"{theirs}/deliveries"),
            await other.post(f"{theirs}/redeliver", json={"status": "failed"}),
            await other.post(f"{theirs}/deliveries/dlv_x/redeliver"),
        ):
            assert answer.status_code == 404, answer.text
    missing = await raw.post(f"{account_path}/webhooks/{hook['id']}/deliveries/dlv_nope/redeliver")
    assert missing.status_code == 404
    await delete_hook(raw, account_path, hook)


@pytest.mark.parametrize("backend", BACKENDS)
def test_private_addresses_are_refused_when_not_allowed(backend: str, unique: str) -> None:
    """With AUTHPI_ALLOW_PRIVATE_NETWORKS off, a name that resolves to a private address passes the
    API's URL check, but the sender refuses the address it resolves to, and says so."""
    skip_without_postgres(backend)
    with run_server(backend, extra_env={"AUTHPI_WEBHOOK_POLL_INTERVAL": "0.2"}) as plain:
        asyncio.run(_refused(plain, unique))


async def _refused(plain: RunningServer, unique: str) -> None:
    async with (
        receiving() as rx,
        httpx.AsyncClient(base_url=plain.url, auth=plain.api_key, timeout=30) as raw,
        AuthPIAdmin(api_key=plain.api_key, base_url=plain.url) as admin,
    ):
        account_path = f"/v1/accounts/{plain.account_id}"
        # A name for this machine (the API refuses literal private addresses and "localhost").
        host = socket.gethostname()
        if is_public(ipaddress.ip_address(socket.getaddrinfo(host, None)[0][4][0])):
            pytest.skip("this machine's name resolves to a public address")
        url = f"http://{host}:{rx.port}/hook"
        hook = await create_hook(
            raw, account_path, url, events=["issuer.created"], retry=FAST_RETRY | {"max_attempts": 2}
        )
        await admin.issuers.create({"name": f"private-{unique}"})

        async def refused() -> bool:
            found = await deliveries(admin, hook["id"])
            return bool(found) and found[0].status == "failed"

        await eventually(refused, timeout=30)
        [delivery] = await deliveries(admin, hook["id"])
        assert delivery.attempt_count == 2 and delivery.last_response_status is None
        assert delivery.last_error and f"refused: {host} resolves to" in delivery.last_error
        assert "AUTHPI_ALLOW_PRIVATE_NETWORKS" in delivery.last_error
        assert rx.receipts == []
