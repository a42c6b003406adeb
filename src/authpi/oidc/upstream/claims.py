"""Reading an identity out of a provider's user-info answer by member names (a claim mapping)."""

from __future__ import annotations

from typing import Any

from authpi.oidc.upstream.http import UpstreamError
from authpi.oidc.upstream.provider import Identity, text, truthy


def member(info: dict[str, Any], path: str | None) -> Any:
    """``info[path]``, where a dotted path reaches into nested objects (``picture.data.url``)."""
    value: Any = info
    for part in (path or "").split("."):
        if not part or not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def mapped(info: Any, mapping: dict[str, str | None], *, email_verified: bool | None = None) -> Identity:
    """The identity ``mapping`` (subject, email, email_verified, name, picture → member names)
    reads from ``info``. ``email_verified`` overrides the mapped flag (a provider whose emails
    are verified by definition)."""
    if not isinstance(info, dict):
        raise UpstreamError("the provider's user info is not a JSON object")
    subject = text(member(info, mapping.get("subject")), 255)
    if subject is None:
        raise UpstreamError("the provider's user info names no subject")
    email = text(member(info, mapping.get("email")))
    verified = (
        truthy(member(info, mapping.get("email_verified"))) if email_verified is None else email_verified
    )
    return Identity(
        subject=subject,
        email=email,
        email_verified=bool(email and verified),
        name=text(member(info, mapping.get("name")), 200),
        picture=text(member(info, mapping.get("picture")), 2000),
    )
