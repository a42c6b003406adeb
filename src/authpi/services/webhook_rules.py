"""What a webhook may say: its URL, event types, subject filters and delivery settings.

Every check here answers 400 ``invalid_request`` with one ``fields`` entry per problem (§C.16), and
returns the value as stored: duplicates removed and settings completed with their defaults, so the
sender reads complete settings from the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from authpi.services.errors import FieldProblem, InvalidRequest
from authpi.services.event_types import EVENT_TYPES
from authpi.services.outbound_addresses import is_local_name, is_public, literal_address

MAX_URL_LENGTH = 2048
MAX_EVENTS = len(EVENT_TYPES)  # 106: every type at most once
MAX_SUBJECTS = 100
MAX_SUBJECT_TYPE = 64
MAX_SUBJECT_ID = 128  # subject_key ("type:id") fits the delivery's 200 characters

# (minimum, maximum, default) of each integer setting; the bool settings only have a default.
RETRY_LIMITS: dict[str, tuple[int, int, int]] = {
    "max_attempts": (1, 30, 10),
    "initial_delay_seconds": (1, 3600, 5),
    "max_delay_seconds": (1, 86400, 3600),
}
BREAKER_LIMITS: dict[str, tuple[int, int, int]] = {
    "failure_threshold": (1, 1000, 20),
    "probe_interval_seconds": (5, 86400, 60),
}
BREAKER_FLAGS: dict[str, bool] = {"enabled": True}
RETRY_DEFAULTS: dict[str, Any] = {name: limits[2] for name, limits in RETRY_LIMITS.items()}
BREAKER_DEFAULTS: dict[str, Any] = {
    **BREAKER_FLAGS,
    **{name: limits[2] for name, limits in BREAKER_LIMITS.items()},
}


def _refuse(field: str, code: str, message: str) -> InvalidRequest:
    return InvalidRequest([FieldProblem(field, code, message)])


def url(value: Any, *, allow_private: bool, field: str = "url") -> str:
    """An absolute http(s) URL without credentials; with private networks off, not naming a
    non-global address literally (names are checked again by the sender once resolved)."""
    if not isinstance(value, str) or not value:
        raise _refuse(field, "required", "url must be a non-empty string")
    if len(value) > MAX_URL_LENGTH:
        raise _refuse(field, "too_long", f"url must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise _refuse(field, "invalid_url", "url must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise _refuse(field, "invalid_url", f"url is not a valid URL: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise _refuse(field, "invalid_scheme", "url must use http or https")
    host = parts.hostname
    if not host:
        raise _refuse(field, "invalid_url", "url must name a host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _refuse(field, "userinfo_not_allowed", "url must not contain credentials; use auth instead")
    if port == 0:
        raise _refuse(field, "invalid_url", "url must not use port 0")
    if not allow_private:
        address = literal_address(host)
        if is_local_name(host) or (address is not None and not is_public(address)):
            raise _refuse(
                field,
                "private_address",
                "url names a private, loopback or link-local address "
                "(allowed only with AUTHPI_ALLOW_PRIVATE_NETWORKS=true)",
            )
    return value


def event_types(value: Any, *, field: str = "events") -> list[str]:
    """Exact catalogue names (no wildcards), at least one, each once; every unknown name is named
    by its index."""
    if not isinstance(value, list) or not value:
        raise _refuse(field, "required", "events must be a non-empty list of event types")
    if len(value) > MAX_EVENTS:
        raise _refuse(field, "too_many", f"events may list at most {MAX_EVENTS} event types")
    problems = [
        FieldProblem(f"{field}.{index}", "unknown_event_type", f"'{name}' is not a webhook event type")
        for index, name in enumerate(value)
        if not isinstance(name, str) or name not in EVENT_TYPES
    ]
    if problems:
        raise InvalidRequest(problems)
    return list(dict.fromkeys(value))


def subjects(value: Any, *, field: str = "subjects") -> list[dict[str, str]] | None:
    """Subject filters ``{"type", "id"}``; None or empty: every subject."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise _refuse(field, "invalid_type", "subjects must be a list of {type, id} objects")
    if len(value) > MAX_SUBJECTS:
        raise _refuse(field, "too_many", f"subjects may list at most {MAX_SUBJECTS} subjects")
    problems: list[FieldProblem] = []
    kept: dict[tuple[str, str], dict[str, str]] = {}
    for index, item in enumerate(value):
        where = f"{field}.{index}"
        if not isinstance(item, Mapping) or set(item) != {"type", "id"}:
            problems.append(FieldProblem(where, "invalid_subject", "a subject is exactly {type, id}"))
            continue
        kind, ident = item["type"], item["id"]
        if not isinstance(kind, str) or not 1 <= len(kind) <= MAX_SUBJECT_TYPE:
            problems.append(
                FieldProblem(f"{where}.type", "invalid", f"type must be 1 to {MAX_SUBJECT_TYPE} characters")
            )
        elif not isinstance(ident, str) or not 1 <= len(ident) <= MAX_SUBJECT_ID:
            problems.append(
                FieldProblem(f"{where}.id", "invalid", f"id must be 1 to {MAX_SUBJECT_ID} characters")
            )
        else:
            kept[(kind, ident)] = {"type": kind, "id": ident}
    if problems:
        raise InvalidRequest(problems)
    return list(kept.values()) or None


def _settings(
    value: Any,
    current: Mapping[str, Any] | None,
    field: str,
    limits: Mapping[str, tuple[int, int, int]],
    flags: Mapping[str, bool],
) -> dict[str, Any]:
    """``value`` over ``current`` over the defaults, every key known and in range."""
    if value is not None and not isinstance(value, Mapping):
        raise _refuse(field, "invalid_type", f"{field} must be an object")
    given = dict(value or {})
    problems = [
        FieldProblem(f"{field}.{key}", "unknown_field", f"{field} has no setting '{key}'")
        for key in given
        if key not in limits and key not in flags
    ]
    for key, (low, high, _) in limits.items():
        got = given.get(key)
        if key in given and (not isinstance(got, int) or isinstance(got, bool) or not low <= got <= high):
            problems.append(
                FieldProblem(
                    f"{field}.{key}", "out_of_range", f"{key} must be an integer from {low} to {high}"
                )
            )
    for key in flags:
        if key in given and not isinstance(given[key], bool):
            problems.append(FieldProblem(f"{field}.{key}", "invalid_type", f"{key} must be true or false"))
    if problems:
        raise InvalidRequest(problems)
    defaults: dict[str, Any] = {**flags, **{key: limit[2] for key, limit in limits.items()}}
    base = {key: (current or {}).get(key, default) for key, default in defaults.items()}
    return {**base, **given}


def retry(value: Any, current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The retry policy: exponential backoff with full jitter, ``max_attempts`` attempts in all."""
    settled = _settings(value, current, "retry", RETRY_LIMITS, {})
    if settled["max_delay_seconds"] < settled["initial_delay_seconds"]:
        raise _refuse(
            "retry.max_delay_seconds",
            "out_of_range",
            "max_delay_seconds must be at least initial_delay_seconds",
        )
    return settled


def circuit_breaker(value: Any, current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """When the sender stops calling a failing receiver, and how often it probes it again."""
    return _settings(value, current, "circuit_breaker", BREAKER_LIMITS, BREAKER_FLAGS)
