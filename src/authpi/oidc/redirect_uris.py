"""Redirect-URI rules (decision 15): exact match, plus RFC 8252's any-port loopback rule for
native clients only."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

LOOPBACK_HOSTS = ("127.0.0.1", "[::1]")


def _without_port(uri: str) -> tuple[str, str, str, str] | None:
    parts = urlsplit(uri)
    if parts.scheme != "http":
        return None
    host = parts.netloc.rsplit("@", 1)[-1]
    host = host.split("]", 1)[0] + "]" if host.startswith("[") else host.split(":", 1)[0]
    if host not in LOOPBACK_HOSTS:
        return None
    return parts.scheme, host, parts.path, parts.query


def matches(requested: str, registered: list[str], *, native: bool) -> bool:
    if requested in registered:
        return True
    if not native:
        return False
    loose = _without_port(requested)
    return loose is not None and any(_without_port(uri) == loose for uri in registered)


def with_params(uri: str, params: dict[str, str | None]) -> str:
    """Append query parameters, keeping any the registered URI already carries."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.extend((k, v) for k, v in params.items() if v is not None)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
