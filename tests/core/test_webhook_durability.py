"""Webhook deliveries survive the server: a kill -9 right after the commit that created them, or
while an attempt is in flight, and two server processes on one PostgreSQL database share the
outbox without ever sending the same attempt twice."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, skip_without_postgres
from tests.core.test_idempotency_crash import CRASH, Server
from tests.core.webhook_receiver import eventually, receiving
from tests.harness import database

FAST_RETRY = {"max_attempts": 30, "initial_delay_seconds": 1, "max_delay_seconds": 1}


@contextmanager
def shared(backend: str) -> Iterator[tuple[dict[str, str], dict[str, str], Path]]:
    """A bootstrapped database and the environment of the servers that use it."""
    with tempfile.TemporaryDirectory(prefix="authpi-webhooks-") as tmp, database(backend, Path(tmp)) as url:
        env = {
            **os.environ,
            "AUTHPI_DATA_DIR": str(Path(tmp) / "data"),
            "AUTHPI_RATE_LIMITS_ENABLED": "false",
            "AUTHPI_LOG_LEVEL": "warning",
            "AUTHPI_FAULT_INJECTION": "true",
            "AUTHPI_ALLOW_PRIVATE_NETWORKS": "true",
            "AUTHPI_WEBHOOK_TIMEOUT": "2",
            "AUTHPI_WEBHOOK_POLL_INTERVAL": "0.2",
        }
        env.pop("AUTHPI_DATABASE_URL", None)
        if url:
            env["AUTHPI_DATABASE_URL"] = url
        boot = subprocess.run(
            [sys.executable, "-m", "authpi", "bootstrap"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert boot.returncode == 0, boot.stderr
        yield env, json.loads(boot.stdout), Path(tmp)


async def _hook(client: httpx.AsyncClient, path: str, url: str, events: list[str]) -> dict[str, Any]:
    body = {"name": "r", "url": url, "auth": {"type": "signature"}, "events": events, "retry": FAST_RETRY}
    answer = await client.post(f"{path}/webhooks", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()["data"]
    return created


async def _deliveries(client: httpx.AsyncClient, path: str, webhook_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"{path}/webhooks/{webhook_id}/deliveries", params=params)).json()
        found.extend(page["data"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return found


@pytest.mark.parametrize("backend", BACKENDS)
def test_deliveries_survive_a_kill_9_after_commit_and_during_an_attempt(backend: str) -> None:
    skip_without_postgres(backend)
    with shared(backend) as (env, creds, tmp):
        asyncio.run(_kill_9(Server(env, tmp / "server.log"), creds))


async def _kill_9(server: Server, creds: dict[str, str]) -> None:
    path = f"/v1/accounts/{creds['account_id']}"
    auth = (creds["key_id"], creds["key_secret"])
    try:
        async with receiving() as rx:
            await asyncio.to_thread(server.start)
            async with httpx.AsyncClient(base_url=server.url, auth=auth, timeout=30) as api:
                hook = await _hook(api, path, rx.url, ["issuer.created", "issuer.updated"])
                with pytest.raises(httpx.TransportError):  # died right after its commit
                    await api.post(f"{path}/issuers", json={"name": "crash"}, headers=CRASH)
            await asyncio.to_thread(server.kill_group)
            assert rx.receipts == []  # the event was committed, never sent

            await asyncio.to_thread(server.start)
            async with httpx.AsyncClient(base_url=server.url, auth=auth, timeout=30) as api:

                async def created_arrived() -> bool:
                    return [r.event["type"] for r in rx.answered_ok()] == ["issuer.created"]

                await eventually(created_arrived, timeout=30)
                issuer_id = rx.receipts[0].event["subject"]["id"]

                # Now kill it while an attempt is in flight (the receiver does not answer).
                rx.answer = "hang"
                await api.patch(f"{path}/issuers/{issuer_id}", json={"description": "x"})

                async def in_flight() -> bool:
                    return len(rx.receipts) == 2

                await eventually(in_flight, timeout=30)
            await asyncio.to_thread(server.kill_group)
            rx.answer = 200
            await asyncio.to_thread(server.start)  # its lease runs out, and the attempt is made again
            async with httpx.AsyncClient(base_url=server.url, auth=auth, timeout=30) as api:

                async def updated_arrived() -> bool:
                    return [r.event["type"] for r in rx.answered_ok()] == [
                        "issuer.created",
                        "issuer.updated",
                    ]

                await eventually(updated_arrived, timeout=60)
                stored = await _deliveries(api, path, hook["id"])
                assert sorted(d["status"] for d in stored) == ["succeeded", "succeeded"]
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill_group()


def test_two_processes_on_one_postgresql_never_send_the_same_attempt_twice() -> None:
    skip_without_postgres("postgres")
    with shared("postgres") as (env, creds, tmp):
        asyncio.run(_two_processes([Server(env, tmp / f"server-{n}.log") for n in range(2)], creds))


async def _two_processes(nodes: list[Server], creds: dict[str, str]) -> None:
    path = f"/v1/accounts/{creds['account_id']}"
    auth = (creds["key_id"], creds["key_secret"])
    try:
        async with receiving() as rx:
            rx.fail_first_attempt = True  # every event takes two attempts
            for node in nodes:
                await asyncio.to_thread(node.start)
            apis = [httpx.AsyncClient(base_url=n.url, auth=auth, timeout=30) for n in nodes]
            try:
                hook = await _hook(apis[0], path, rx.url, ["issuer.created", "issuer.updated"])
                issuers = []
                for n in range(6):
                    made = await apis[n % 2].post(f"{path}/issuers", json={"name": f"two-{n}"})
                    issuers.append(made.json()["data"]["id"])
                for round_ in range(4):
                    await asyncio.gather(
                        *(
                            apis[(n + round_) % 2].patch(
                                f"{path}/issuers/{issuer_id}", json={"description": f"r{round_}"}
                            )
                            for n, issuer_id in enumerate(issuers)
                        )
                    )

                listed = (
                    await apis[0].get(
                        f"{path}/events",
                        params={"event_types": "issuer.created,issuer.updated", "limit": 100},
                    )
                ).json()["data"]
                expected = {e["id"] for e in listed if e["timestamp"] > hook["created_at"]}
                assert len(expected) >= 30

                async def all_delivered() -> bool:
                    return rx.delivered_ids() == expected

                await eventually(all_delivered, timeout=120)
                await asyncio.sleep(1)
                sent = Counter(r.event_id for r in rx.receipts)
                stored = await _deliveries(apis[1], path, hook["id"])
                assert {d["event_id"] for d in stored} == expected
                for delivery in stored:
                    assert delivery["status"] == "succeeded"
                    assert delivery["attempt_count"] == 2 == sent[delivery["event_id"]], delivery
                assert Counter(r.event_id for r in rx.answered_ok()) == Counter({e: 1 for e in sent})
                for subject_receipts in _by_subject(rx.receipts).values():
                    assert subject_receipts == sorted(subject_receipts)
            finally:
                for api in apis:
                    await api.aclose()
    finally:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.kill_group()


def _by_subject(receipts: list[Any]) -> dict[str, list[str]]:
    order: dict[str, list[str]] = {}
    for receipt in receipts:
        order.setdefault(receipt.event["subject"]["id"], []).append(receipt.event_id)
    return order
