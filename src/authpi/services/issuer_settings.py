"""Issuer settings: documented defaults, validation of the known keys, round-trip of unknown ones."""

from __future__ import annotations

import copy
from typing import Any

from authpi import i18n
from authpi.services.errors import InvalidInput

ACCESS_MODES = ("open", "invite_only", "approval", "closed")
MAX_TOKEN_TTL = 21 * 86400

DEFAULTS: dict[str, Any] = {
    "portals": {"login": {"enabled": True}, "signup": {"enabled": True}, "account": {"enabled": True}},
    "branding": {"name": None, "logo_url": None, "primary_color": None, "background_color": None},
    "access": {
        "mode": "open",
        "allowed_email_domains": [],
        # Sign-up proves the mailbox (a code or link by email) before the account exists; always
        # so while allowed_email_domains restricts sign-up, whatever this says.
        "verify_email": False,
        "sessions": {"max_age": 604800, "idle_timeout": 43200, "max_per_user": 50},
    },
    "security": {
        "tokens": {"access_token_ttl": 1800, "id_token_ttl": 3600, "refresh_token_ttl": 604800},
        "lockout": {"max_failures": 5, "duration": 900},
        # Decision 29: ``required`` asks every user for a second factor (enrolling one if needed);
        # ``trusted_device_days`` is how long a browser the user trusts skips it (0: never).
        "mfa": {"required": False, "trusted_device_days": 30},
    },
}

# (path, minimum, maximum) for every bounded integer setting.
_BOUNDS: tuple[tuple[tuple[str, ...], int, int], ...] = (
    (("access", "sessions", "max_age"), 60, 31536000),
    (("access", "sessions", "idle_timeout"), 60, 2592000),
    (("access", "sessions", "max_per_user"), 1, 50),
    (("security", "tokens", "access_token_ttl"), 60, MAX_TOKEN_TTL),
    (("security", "tokens", "id_token_ttl"), 60, MAX_TOKEN_TTL),
    (("security", "tokens", "refresh_token_ttl"), 60, MAX_TOKEN_TTL),
    (("security", "lockout", "max_failures"), 1, 100),
    (("security", "lockout", "duration"), 1, 86400),
    (("security", "mfa", "trusted_device_days"), 0, 365),
)


PORTALS = ("login", "signup", "account")


def portal_enabled(settings: dict[str, Any], portal: str) -> bool:
    """Whether the hosted ``portal`` (one of ``PORTALS``) is switched on (the default)."""
    return bool(_lookup(settings, ("portals", portal, "enabled")) is not False)


def mfa_required(settings: dict[str, Any]) -> bool:
    """Whether the issuer asks every user for a second factor (decision 29)."""
    return _lookup(settings, ("security", "mfa", "required")) is True


def trusted_device_days(settings: dict[str, Any]) -> int:
    """How many days a trusted device skips the second factor (decision 29); 0 switches it off."""
    value = _lookup(settings, ("security", "mfa", "trusted_device_days"))
    if isinstance(value, bool) or not isinstance(value, int):
        return int(DEFAULTS["security"]["mfa"]["trusted_device_days"])
    return max(value, 0)


def default_locale(settings: dict[str, Any]) -> str | None:
    """``settings.portals.default_locale``: the language of the issuer's hosted pages and messages
    when neither the sign-in request nor the browser asks for one the server has."""
    value = _lookup(settings, ("portals", "default_locale"))
    return value if isinstance(value, str) else None


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _lookup(settings: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = settings
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def validate(settings: dict[str, Any]) -> dict[str, Any]:
    for section in DEFAULTS:
        if not isinstance(settings.get(section), dict):
            raise InvalidInput.on(
                f"settings.{section}", "invalid_type", f"settings.{section} must be an object"
            )
    for path, low, high in _BOUNDS:
        value = _lookup(settings, path)
        field = "settings." + ".".join(path)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InvalidInput.on(field, "out_of_range", f"{field} must be an integer from {low} to {high}")
    for portal in PORTALS:
        node = settings["portals"].get(portal)
        if node is not None and not (isinstance(node, dict) and isinstance(node.get("enabled", True), bool)):
            field = f"settings.portals.{portal}.enabled"
            raise InvalidInput.on(field, "invalid_type", f"{field} must be a boolean")
    locale = settings["portals"].get("default_locale")
    if locale is not None and locale not in i18n.SUPPORTED:
        raise InvalidInput.on(
            "settings.portals.default_locale",
            "invalid_choice",
            f"settings.portals.default_locale must be one of {', '.join(i18n.SUPPORTED)} (or null)",
        )
    if not isinstance(_lookup(settings, ("security", "mfa", "required")), bool):
        raise InvalidInput.on(
            "settings.security.mfa.required",
            "invalid_type",
            "settings.security.mfa.required must be a boolean",
        )
    if not isinstance(settings["access"].get("verify_email", False), bool):
        raise InvalidInput.on(
            "settings.access.verify_email", "invalid_type", "settings.access.verify_email must be a boolean"
        )
    mode = settings["access"].get("mode")
    if mode not in ACCESS_MODES:
        raise InvalidInput.on(
            "settings.access.mode",
            "invalid_choice",
            f"settings.access.mode must be one of {', '.join(ACCESS_MODES)}",
        )
    domains = settings["access"].get("allowed_email_domains")
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        raise InvalidInput.on(
            "settings.access.allowed_email_domains",
            "invalid_type",
            "allowed_email_domains must be a list of strings",
        )
    return settings


def build(patch: dict[str, Any] | None, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults (or the current settings) with ``patch`` merged in, validated."""
    base = deep_merge(DEFAULTS, current or {})
    return validate(deep_merge(base, patch or {}))


def branding_configured(settings: dict[str, Any]) -> bool:
    branding = settings.get("branding") or {}
    return any(value not in (None, "", [], {}) for value in branding.values())
