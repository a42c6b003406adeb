"""Email through SMTP (aiosmtplib), configured by one URL (decision 31):

* ``smtp://[user:pass@]host[:port]`` — plain SMTP (port 25 by default); ``?starttls=true`` upgrades
  the connection with STARTTLS before anything else is sent (and fails rather than go on in clear);
* ``smtps://[user:pass@]host[:port]`` — implicit TLS from the first byte (port 465 by default).

User name and password are percent-decoded (``%40`` for an ``@`` in a user name). The server is
the operator's own, so it is not subject to the private-address guard of outbound HTTP.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from authpi.messages import Content

TRUE = ("true", "1", "yes")
FALSE = ("false", "0", "no")


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_url(url: str) -> SmtpTarget:
    """The SMTP server an ``AUTHPI_SMTP_URL`` names (ValueError saying what is wrong)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("must be an smtp:// or smtps:// URL (e.g. smtp://user:pass@mail.example.com:587)")
    if not parts.hostname:
        raise ValueError("must name the SMTP server's host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("must not have a path or fragment")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"starttls"}
    if unknown:
        raise ValueError(f"has unknown parameters: {', '.join(sorted(unknown))} (only starttls=true|false)")
    starttls_value = (query.get("starttls") or ["false"])[-1].lower()
    if starttls_value not in TRUE + FALSE:
        raise ValueError("starttls must be true or false")
    implicit_tls = parts.scheme == "smtps"
    starttls = starttls_value in TRUE
    if implicit_tls and starttls:
        raise ValueError("smtps:// is TLS from the start: starttls=true is for smtp://")
    return SmtpTarget(
        host=parts.hostname,
        port=port or (465 if implicit_tls else 25),
        implicit_tls=implicit_tls,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def check_address(value: str) -> str:
    """``AUTHPI_EMAIL_FROM``: ``addr@example.com`` or ``Name <addr@example.com>``."""
    _name, address = parseaddr(value)
    if "@" not in address or any(ch in value for ch in "\r\n"):
        raise ValueError("must be an email address, optionally with a name: AuthPI <noreply@example.com>")
    return value


def compose(
    sender: str, recipient: str, content: Content, message_id: str, language: str | None = None
) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) in ``language`` (``Content-Language``,
    RFC 3282); header values refuse line breaks."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = content.subject or ""
    message["Date"] = formatdate(localtime=False, usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or None
    message["Message-ID"] = make_msgid(idstring=message_id, domain=domain)
    message.set_content(content.text)
    if content.html:
        message.add_alternative(content.html, subtype="html")
    if language:  # after the body: setting the content drops every Content-* header
        message["Content-Language"] = language
    return message


class SmtpRefused(Exception):
    """The server answered with an error code. ``permanent``: it refused the recipient for good
    (5xx to RCPT), so retrying will not help; any other refusal (a 4xx, or a 5xx to the
    credentials, which the operator may fix) is retried."""

    def __init__(self, code: int, text: str, *, recipient: bool = False) -> None:
        super().__init__(f"SMTP {code}: {text}")
        self.permanent = recipient and 500 <= code < 600


async def send(target: SmtpTarget, message: EmailMessage, limit_s: float) -> None:
    """Deliver ``message`` to the server within ``limit_s`` seconds in all (SmtpRefused when the
    server refuses it, OSError/TimeoutError/aiosmtplib errors when it cannot be reached)."""
    context = ssl.create_default_context()
    try:
        async with asyncio.timeout(limit_s):
            await aiosmtplib.send(
                message,
                hostname=target.host,
                port=target.port,
                username=target.username,
                password=target.password,
                use_tls=target.implicit_tls,
                start_tls=target.starttls,
                tls_context=context,
                timeout=limit_s,
            )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        first = exc.recipients[0] if exc.recipients else None
        raise SmtpRefused(
            first.code if first else 550, first.message if first else "recipient refused"
        ) from exc
    except aiosmtplib.SMTPResponseException as exc:
        raise SmtpRefused(exc.code, exc.message) from exc
