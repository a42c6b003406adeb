"""A server that delivers its email to an aiosmtpd server and its SMS to an HTTP receiver in the
test process, and helpers to read codes and links out of what they received (never out of the
database)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage

from tests.core.message_outbox import Mailbox, SmsGateway, sms_gateway, smtp_server
from tests.core.webhook_receiver import eventually
from tests.harness import RunningServer, run_server

SMS_SECRET = "sms-test-secret-for-codes-0123"
DELIVERY = {
    "AUTHPI_ALLOW_PRIVATE_NETWORKS": "true",
    "AUTHPI_EMAIL_FROM": "Sign-in <noreply@codes.example>",
    "AUTHPI_MESSAGE_POLL_INTERVAL": "0.1",
    "AUTHPI_MESSAGE_RETRY_DELAY": "0.2",
    "AUTHPI_SMS_WEBHOOK_SECRET": SMS_SECRET,
}


@dataclass
class Delivering:
    server: RunningServer
    mailbox: Mailbox
    gateway: SmsGateway

    async def mail(self, address: str, count: int = 1, timeout: float = 30) -> EmailMessage:
        """The ``count``-th email received for ``address`` (waiting for it)."""

        async def arrived() -> bool:
            return len(self.mailbox.to(address)) >= count

        await eventually(arrived, timeout=timeout, step=0.1)
        return self.mailbox.to(address)[count - 1]

    async def sms(self, number: str, count: int = 1, timeout: float = 30) -> str:
        async def arrived() -> bool:
            return len([item for item in self.gateway.received if item["to"] == number]) >= count

        await eventually(arrived, timeout=timeout, step=0.1)
        return str([item for item in self.gateway.received if item["to"] == number][count - 1]["text"])

    def mails_to(self, address: str) -> int:
        return len(self.mailbox.to(address))

    def texts_to(self, number: str) -> int:
        return len([item for item in self.gateway.received if item["to"] == number])


@contextmanager
def delivering_server(backend: str, extra: dict[str, str] | None = None) -> Iterator[Delivering]:
    assert SMS_SECRET not in (extra or {}).values()
    with smtp_server() as (mailbox, port), sms_gateway(SMS_SECRET) as gateway:
        env = {
            **DELIVERY,
            "AUTHPI_SMTP_URL": f"smtp://127.0.0.1:{port}",
            "AUTHPI_SMS_WEBHOOK_URL": gateway.url,
            **(extra or {}),
        }
        with run_server(backend, env) as running:
            yield Delivering(running, mailbox, gateway)


def text_of(mail: EmailMessage) -> str:
    part = mail.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def code_in(text: str) -> str:
    found = re.search(r"\b(\d{6})\b", text)
    assert found, text
    return found.group(1)


def link_in(text: str) -> str:
    found = re.search(r"(https?://\S+)", text)
    assert found, text
    return found.group(1)


def unique_address(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}@example.com"
