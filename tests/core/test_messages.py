"""The message outbox over a real SMTP server and a real SMS receiver: email with text and HTML,
signed SMS, retries after refusals, ``failed`` after the attempt budget, the events, a kill -9 with
messages owed, and the development path (nothing configured: ``authpi outbox``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, skip_without_postgres
from tests.core.message_outbox import (
    Credentials,
    Mailbox,
    SmsGateway,
    enqueue,
    self_signed,
    sms_gateway,
    smtp_server,
)
from tests.core.test_idempotency_crash import Server
from tests.core.test_webhook_durability import shared
from tests.core.webhook_receiver import eventually
from tests.db_query import rows
from tests.harness import RunningServer, run_server

pytestmark = pytest.mark.anyio

SMS_SECRET = "sms-test-secret-0123456789"
FAST = {
    "AUTHPI_ALLOW_PRIVATE_NETWORKS": "true",
    "AUTHPI_EMAIL_FROM": "Acme Sign-in <noreply@acme.example>",
    "AUTHPI_MESSAGE_POLL_INTERVAL": "0.2",
    "AUTHPI_MESSAGE_RETRY_DELAY": "0.2",
    "AUTHPI_MESSAGE_RETRY_MAX_DELAY": "0.4",
    "AUTHPI_MESSAGE_MAX_ATTEMPTS": "3",
    "AUTHPI_MESSAGE_TIMEOUT": "3",
    "AUTHPI_SMS_WEBHOOK_SECRET": SMS_SECRET,
}


class Delivering:
    def __init__(self, server: RunningServer, mailbox: Mailbox, gateway: SmsGateway) -> None:
        self.server, self.mailbox, self.gateway = server, mailbox, gateway


@pytest.fixture(scope="module", params=BACKENDS)
def delivering(request: pytest.FixtureRequest) -> Iterator[Delivering]:
    """A server that sends email to the test's SMTP server and SMS to the test's receiver."""
    skip_without_postgres(request.param)
    with smtp_server() as (mailbox, port), sms_gateway(SMS_SECRET) as gateway:
        env = {**FAST, "AUTHPI_SMTP_URL": f"smtp://127.0.0.1:{port}", "AUTHPI_SMS_WEBHOOK_URL": gateway.url}
        with run_server(request.param, env) as running:
            yield Delivering(running, mailbox, gateway)


async def _status(server: RunningServer, message_id: str) -> tuple[str, int, str | None, str]:
    query = "SELECT status, attempt_count, last_error, content_sealed FROM messages WHERE id = ?"
    found = await rows(server, query, message_id)
    status, attempts, error, sealed = found[0]
    return str(status), int(attempts), error, str(sealed)


async def _events(server: RunningServer, event_type: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.url, auth=server.api_key, timeout=30) as client:
        answer = await client.get(
            f"/v1/accounts/{server.account_id}/events", params={"event_types": event_type, "limit": 100}
        )
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()["data"]
        return found


async def test_an_email_arrives_over_smtp_with_text_and_branded_html(delivering: Delivering) -> None:
    server, mailbox = delivering.server, delivering.mailbox
    async with httpx.AsyncClient(base_url=server.url, auth=server.api_key, timeout=30) as client:
        path = f"/v1/accounts/{server.account_id}/issuers"
        made = await client.post(path, json={"name": "Acme & <Widgets>"})
        assert made.status_code == 201, made.text
        issuer_id = made.json()["data"]["id"]
    address = f"ada-{time.monotonic_ns()}@example.com"
    [message_id] = await enqueue(server.env, server.account_id, [address], issuer_id=issuer_id, code="735190")

    async def arrived() -> bool:
        return bool(mailbox.to(address))

    await eventually(arrived, timeout=30)
    [mail] = mailbox.to(address)
    assert mail["From"] == "Acme Sign-in <noreply@acme.example>"
    assert mail["Subject"] == "Your Acme & <Widgets> code: 735190"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and html is not None
    assert "735190" in text.get_content() and "Acme & <Widgets>" in text.get_content()
    assert "735190" in html.get_content()
    assert "Acme &amp; &lt;Widgets&gt;" in html.get_content() and "<Widgets>" not in html.get_content()

    async def sent() -> bool:
        return (await _status(server, message_id))[0] == "sent"

    await eventually(sent, timeout=10)
    _, attempts, error, sealed = await _status(server, message_id)
    assert (attempts, error) == (1, None)
    assert "735190" not in sealed and address not in sealed  # what it says is sealed at rest
    [event] = [e for e in await _events(server, "email.sent") if e["subject"]["id"] == message_id]
    assert event["data"]["to"] == address and event["data"]["issuer_id"] == issuer_id
    assert "735190" not in str(event)


async def test_an_sms_goes_to_the_gateway_signed(delivering: Delivering) -> None:
    server, gateway = delivering.server, delivering.gateway
    phone = f"+1555{time.monotonic_ns() % 10_000_000:07d}"
    [message_id] = await enqueue(server.env, server.account_id, [phone], channel="sms", code="118822")

    async def arrived() -> bool:
        return any(item["to"] == phone for item in gateway.received)

    await eventually(arrived, timeout=30)
    [item] = [item for item in gateway.received if item["to"] == phone]
    assert item["id"] == message_id and "118822" in item["text"]
    assert item["headers"]["webhook-id"] == message_id
    assert gateway.bad_signatures == 0  # the receiver refuses a wrong HMAC (401)

    async def logged() -> bool:
        return any(e["subject"]["id"] == message_id for e in await _events(server, "sms.sent"))

    await eventually(logged, timeout=10)
    assert (await _status(server, message_id))[:2] == ("sent", 1)


async def test_a_refused_email_is_retried_until_the_server_accepts_it(delivering: Delivering) -> None:
    server, mailbox = delivering.server, delivering.mailbox
    address = f"retry-{time.monotonic_ns()}@example.com"
    with mailbox.lock:
        mailbox.refuse_next = 2
        refused_before = mailbox.refused
    [message_id] = await enqueue(server.env, server.account_id, [address])

    async def arrived() -> bool:
        return bool(mailbox.to(address))

    await eventually(arrived, timeout=30)
    assert mailbox.refused - refused_before == 2
    assert len(mailbox.to(address)) == 1

    async def sent() -> bool:
        return (await _status(server, message_id))[0] == "sent"

    await eventually(sent, timeout=10)
    assert (await _status(server, message_id))[1:3] == (3, None)


async def test_an_email_is_failed_after_its_attempt_budget(delivering: Delivering) -> None:
    server, mailbox = delivering.server, delivering.mailbox
    address = f"never-{time.monotonic_ns()}@example.com"
    with mailbox.lock:
        mailbox.refuse_to.add(address)
    [message_id] = await enqueue(server.env, server.account_id, [address])

    async def failed() -> bool:
        return (await _status(server, message_id))[0] == "failed"

    await eventually(failed, timeout=30)
    _, attempts, error, _ = await _status(server, message_id)
    assert attempts == 3 and error is not None and "451" in error
    await asyncio.sleep(1)  # nothing more is attempted
    assert (await _status(server, message_id))[1] == 3 and not mailbox.to(address)
    [event] = [e for e in await _events(server, "email.failed") if e["subject"]["id"] == message_id]
    assert event["data"]["attempts"] == 3 and "451" in event["data"]["last_error"]


async def test_without_smtp_or_sms_messages_stay_in_the_outbox_for_the_cli(server: RunningServer) -> None:
    address = f"dev-{time.monotonic_ns()}@example.com"
    [email_id] = await enqueue(server.env, server.account_id, [address], code="990011")
    [sms_id] = await enqueue(server.env, server.account_id, ["+15550001111"], channel="sms", code="445566")
    await asyncio.sleep(1.5)  # more than a poll interval: nothing claims them
    assert (await _status(server, email_id))[:2] == ("pending", 0)
    assert (await _status(server, sms_id))[:2] == ("pending", 0)

    listed = await asyncio.to_thread(server.cli, "outbox", "list", "--status", "pending")
    assert listed.returncode == 0, listed.stderr
    assert email_id in listed.stdout and address in listed.stdout and sms_id in listed.stdout
    assert "990011" not in listed.stdout  # the list never shows what a message says
    shown = await asyncio.to_thread(server.cli, "outbox", "show", email_id)
    assert shown.returncode == 0, shown.stderr
    assert "990011" in shown.stdout and "status: pending" in shown.stdout and "--- HTML ---" in shown.stdout
    missing = await asyncio.to_thread(server.cli, "outbox", "show", "msg_nope")
    assert missing.returncode == 1 and "no message" in missing.stderr
    assert server.log_path is not None
    log = server.log_path.read_text()
    assert "AUTHPI_SMTP_URL is not set" in log and "AUTHPI_SMS_WEBHOOK_URL is not set" in log


@pytest.mark.parametrize("backend", BACKENDS)
def test_messages_survive_a_kill_9_of_the_server(backend: str) -> None:
    """Messages committed while no server runs, and a kill -9 while attempts are in flight: after a
    restart every message is delivered, none more than twice (the one in flight at the kill)."""
    skip_without_postgres(backend)
    with smtp_server() as (mailbox, port), shared(backend) as (env, creds, tmp):
        mailbox.data_delay = 0.3  # attempts take time, so the kill finds some in flight
        env = {**env, **FAST, "AUTHPI_SMTP_URL": f"smtp://127.0.0.1:{port}", "AUTHPI_MESSAGE_TIMEOUT": "2"}
        env.pop("AUTHPI_SMS_WEBHOOK_SECRET")
        addresses = [f"crash-{n}@example.com" for n in range(24)]
        ids = asyncio.run(enqueue(env, creds["account_id"], addresses))
        node = Server(env, Path(tmp) / "server.log")
        node.start()
        deadline = time.monotonic() + 30
        while len(mailbox.received) < 2:
            assert time.monotonic() < deadline, "nothing was sent"
            time.sleep(0.05)
        node.kill_group()
        assert len({m["To"] for m in mailbox.received}) < len(addresses)  # the kill left some owed
        node.start()
        try:
            deadline = time.monotonic() + 90
            while {m["To"] for m in mailbox.received} != set(addresses):
                assert time.monotonic() < deadline, "not every message was delivered after the restart"
                time.sleep(0.2)
            # The last outcomes are recorded just after the SMTP server accepted the mail.
            while asyncio.run(_statuses(env, ids)) != {"sent"}:
                assert time.monotonic() < deadline, "not every message was recorded as sent"
                time.sleep(0.2)
        finally:
            node.kill_group()
        copies = Counter(str(m["To"]) for m in mailbox.received)
        assert max(copies.values()) <= 2
        assert sum(copies.values()) - len(addresses) <= 4  # only those in flight at the kill (concurrency)


async def _statuses(env: dict[str, str], ids: list[str]) -> set[str]:
    probe = RunningServer("", "", "", "", "", env)
    return {str((await rows(probe, "SELECT status FROM messages WHERE id = ?", i))[0][0]) for i in ids}


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"AUTHPI_SMTP_URL": "http://u:secretpw@mail.example"}, "AUTHPI_SMTP_URL: must be an smtp:// or"),
        ({"AUTHPI_SMTP_URL": "smtp://mail.example?tls=1"}, "AUTHPI_SMTP_URL: has unknown parameters: tls"),
        ({"AUTHPI_SMTP_URL": "smtps://h?starttls=true"}, "starttls=true is for smtp://"),
        ({"AUTHPI_SMTP_URL": "smtp://h:25"}, "AUTHPI_EMAIL_FROM is required with AUTHPI_SMTP_URL"),
        ({"AUTHPI_SMS_WEBHOOK_URL": "https://sms.example.com"}, "AUTHPI_SMS_WEBHOOK_SECRET is required"),
        ({"AUTHPI_EMAIL_FROM": "not an address"}, "AUTHPI_EMAIL_FROM: must be an email address"),
    ],
)
def test_a_delivery_setting_that_cannot_work_stops_the_command(
    env: dict[str, str], problem: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "authpi", "migrate"],
        env={**os.environ, "AUTHPI_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and problem in result.stderr, result.stderr
    assert "secretpw" not in result.stderr  # values are never repeated (they may hold passwords)


@pytest.mark.parametrize("backend", BACKENDS)
def test_housekeeping_purges_finished_messages_after_the_retention(backend: str) -> None:
    skip_without_postgres(backend)
    with smtp_server() as (mailbox, port):
        env = {
            **FAST,
            "AUTHPI_SMTP_URL": f"smtp://127.0.0.1:{port}",
            "AUTHPI_MESSAGE_MAX_ATTEMPTS": "100",
            "AUTHPI_HOUSEKEEPING_INTERVAL": "1",
            "AUTHPI_EXPIRED_RETENTION": "2",
        }
        mailbox.refuse_to.add("owed@example.com")
        with run_server(backend, env) as server:
            asyncio.run(_sent_go_owed_stay(server, mailbox))


async def _sent_go_owed_stay(server: RunningServer, mailbox: Mailbox) -> None:
    sent_id, owed_id = await enqueue(server.env, server.account_id, ["done@example.com", "owed@example.com"])

    async def purged() -> bool:
        return not await rows(server, "SELECT id FROM messages WHERE id = ?", sent_id)

    await eventually(purged, timeout=30)
    assert mailbox.to("done@example.com")
    status, attempts, _, _ = await _status(server, owed_id)
    assert status in ("pending", "sending") and attempts >= 3  # owed: kept while retried


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["starttls", "smtps"])
def test_email_goes_over_tls_with_the_credentials_of_the_url(backend: str, mode: str, tmp_path: Path) -> None:
    """STARTTLS (``?starttls=true``) and implicit TLS (``smtps://``) against a server that refuses
    mail without TLS and without a login; the user name and password come percent-decoded from the URL."""
    skip_without_postgres(backend)
    context, cert = self_signed(tmp_path)
    login = Credentials("mailer@acme.example", "p@ss word")
    tls: dict[str, Any] = (
        {"tls_context": context, "require_starttls": True}
        if mode == "starttls"
        # aiosmtpd cannot tell an implicit-TLS connection is TLS (it offers AUTH only after STARTTLS):
        # here the connection is TLS from the first byte or nothing.
        else {"ssl_context": context, "auth_require_tls": False}
    )
    with smtp_server(**tls, authenticator=login, auth_required=True) as (mailbox, port):
        url = (
            f"smtp://mailer%40acme.example:p%40ss%20word@127.0.0.1:{port}?starttls=true"
            if mode == "starttls"
            else f"smtps://mailer%40acme.example:p%40ss%20word@127.0.0.1:{port}"
        )
        # The server trusts the test's certificate authority (OpenSSL's SSL_CERT_FILE), nothing else.
        env = {**FAST, "AUTHPI_SMTP_URL": url, "SSL_CERT_FILE": str(cert)}
        with run_server(backend, env) as server:
            [message_id] = asyncio.run(enqueue(server.env, server.account_id, ["tls@example.com"]))
            deadline = time.monotonic() + 30
            while not mailbox.to("tls@example.com"):
                assert time.monotonic() < deadline, server.log_path and server.log_path.read_text()[-2000:]
                time.sleep(0.1)
            assert login.tries == ["mailer@acme.example"]
            while asyncio.run(_status(server, message_id))[0] != "sent":
                assert time.monotonic() < deadline, "the message was not recorded as sent"
                time.sleep(0.1)
            assert asyncio.run(_status(server, message_id))[1:3] == (1, None)
