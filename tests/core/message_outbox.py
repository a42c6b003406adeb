"""What the message tests run against: a real SMTP server (aiosmtpd) and a real HTTP receiver for
SMS in the test process, and messages put into a server's outbox through the service layer against
the server's own database (no endpoint exists just for tests; features enqueue the same way)."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import hashlib
import hmac
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from authpi.crypto.secretbox import SecretBox, load_master_key
from authpi.services import messages
from authpi.settings import Settings
from authpi.storage.db import make_engine, make_sessionmaker
from authpi.storage.tables.issuers import Issuer
from tests.harness import free_port


@dataclass
class Mailbox:
    """The SMTP server's behaviour (set by the test) and what it accepted."""

    refuse_next: int = 0  # answer 451 to this many DATA commands, then accept
    refuse_to: set[str] = field(default_factory=set)  # always answer 451 for these recipients
    data_delay: float = 0.0  # seconds before answering DATA (a slow server)
    received: list[EmailMessage] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        with self.lock:
            if self.refuse_next > 0 or set(envelope.rcpt_tos) & self.refuse_to:
                self.refuse_next = max(0, self.refuse_next - 1)
                self.refused += 1
                return "451 4.3.0 try again later"
            parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            self.received.append(parsed)
        return "250 2.0.0 accepted"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.received if m["To"] == address]


@contextmanager
def smtp_server(**options: Any) -> Iterator[tuple[Mailbox, int]]:
    """``options`` go to aiosmtpd (``ssl_context`` for implicit TLS, ``tls_context`` and
    ``require_starttls`` for STARTTLS, ``authenticator`` and ``auth_required``)."""
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def self_signed(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 and the certificate file a client must trust for it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


@dataclass
class Credentials:
    """An aiosmtpd authenticator that accepts one login and records every try."""

    login: str
    password: str
    tries: list[str] = field(default_factory=list)

    def __call__(self, _server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any) -> AuthResult:
        self.tries.append(data.login.decode())
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == (
            self.login,
            self.password,
        )
        return AuthResult(success=ok)


@dataclass
class SmsGateway:
    """An HTTP receiver standing in for the SMS provider: it checks the HMAC of every request."""

    secret: str
    port: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0

    def verify(self, headers: Any, body: bytes) -> bool:
        parts = dict(item.split("=", 1) for item in headers.get("X-Webhook-Signature", "").split(","))
        expected = hmac.new(self.secret.encode(), f"{parts.get('t')}.".encode() + body, hashlib.sha256)
        fresh = abs(time.time() - int(parts.get("t", "0"))) < 300
        return fresh and hmac.compare_digest(expected.hexdigest(), parts.get("v1", ""))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms"


@contextmanager
def sms_gateway(secret: str) -> Iterator[SmsGateway]:
    gateway = SmsGateway(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if gateway.verify(self.headers, body):
                gateway.received.append({"headers": dict(self.headers), **json.loads(body)})
                self.send_response(202)
            else:
                gateway.bad_signatures += 1
                self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    gateway.port = http.server_address[1]
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield gateway
    finally:
        http.shutdown()
        http.server_close()


async def enqueue(
    env: dict[str, str],
    account_id: str,
    recipients: list[str],
    *,
    channel: str = "email",
    issuer_id: str | None = None,
    code: str = "424242",
    locale: str | None = None,
) -> list[str]:
    """Commit one message per recipient into the outbox of the server that runs with ``env``, as a
    feature of the server would (``services.messages.enqueue`` in a transaction)."""
    settings = Settings(
        data_dir=Path(env["AUTHPI_DATA_DIR"]), database_url=env.get("AUTHPI_DATABASE_URL"), master_key=None
    )
    engine = make_engine(settings, pool_size=1)
    box = SecretBox(load_master_key(None, settings.data_dir))
    try:
        async with make_sessionmaker(engine)() as session:
            issuer = await session.get(Issuer, issuer_id) if issuer_id else None
            made = [
                await messages.enqueue(
                    session,
                    box,
                    account_id=account_id,
                    issuer=issuer,
                    channel=channel,
                    recipient=recipient,
                    template="code",
                    context={"code": code, "minutes": 10},
                    locale=locale,
                )
                for recipient in recipients
            ]
            await session.commit()
            return [row.id for row in made]
    finally:
        await engine.dispose()
