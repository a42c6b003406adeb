"""The thirteen auth-method types and their rules (seed 001, decision 25).

Each type says whether ``first_factor_only`` is fixed, whether ``settings`` must be sent, which
settings are required, which are secrets (sealed at rest, never returned) and which are immutable
once created, plus the documented default of every optional setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from authpi.services.errors import FieldProblem

SOCIAL = ("oauth2", "oidc", "apple", "github", "oauth2_manual")
# The built-in providers of ``oauth2`` (oidc/signin/methods/oauth2/presets.py has their endpoints).
OAUTH2_PROVIDERS = ("google", "microsoft", "gitlab", "discord", "slack", "linkedin", "facebook", "twitch")
# What ``oauth2_manual`` reads from the user-info answer, and the default member names.
CLAIMS = {
    "subject": "sub",
    "email": "email",
    "email_verified": "email_verified",
    "name": "name",
    "picture": "picture",
}


@dataclass(frozen=True)
class MethodType:
    name: str
    first_factor_only: bool | None  # None: the caller chooses
    settings_required: bool
    required: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def social(self) -> bool:
        return self.name in SOCIAL

    @property
    def immutable(self) -> tuple[str, ...]:
        # The credentials that identify the upstream provider cannot change after creation.
        return self.required if self.social else ()


_OTP = {"code_length": 6, "ttl": 600, "max_attempts": 5}

TYPES: dict[str, MethodType] = {
    t.name: t
    for t in (
        MethodType(
            "oauth2",
            True,
            True,
            required=("provider", "client_id", "client_secret", "redirect_uri"),
            secrets=("client_secret",),
            urls=("redirect_uri",),
            defaults={"scopes": [], "tenant": None, "store_tokens": False},
        ),
        MethodType(
            "oidc",
            True,
            True,
            required=("issuer_url", "client_id", "client_secret"),
            secrets=("client_secret",),
            urls=("issuer_url",),
            defaults={"scopes": ["openid", "email", "profile"], "store_tokens": False},
        ),
        MethodType(
            "apple",
            True,
            True,
            required=("client_id", "team_id", "key_id", "private_key"),
            secrets=("private_key",),
            defaults={"scopes": ["name", "email"], "store_tokens": False},
        ),
        MethodType(
            "github",
            True,
            True,
            required=("client_id", "client_secret"),
            secrets=("client_secret",),
            defaults={"scopes": ["read:user", "user:email"], "store_tokens": False},
        ),
        MethodType(
            "oauth2_manual",
            True,
            True,
            required=("authorization_url", "token_url", "userinfo_url", "client_id", "client_secret"),
            secrets=("client_secret",),
            urls=("authorization_url", "token_url", "userinfo_url"),
            defaults={
                "scopes": [],
                "claims": dict(CLAIMS),
                "token_endpoint_auth": "post",
                "store_tokens": False,
            },
        ),
        MethodType(
            "password",
            True,
            True,
            defaults={
                "min_length": 8,
                "max_length": 128,
                "require_uppercase": False,
                "require_lowercase": False,
                "require_digit": False,
                "require_symbol": False,
            },
        ),
        MethodType("temporary_password", True, False, defaults={"ttl": 86400, "length": 16}),
        MethodType("email_link", True, True, defaults={"ttl": 900}),
        MethodType("email_otp", True, False, defaults=dict(_OTP)),
        MethodType("sms_otp", True, False, defaults=dict(_OTP)),
        MethodType(
            "passkey",
            None,
            True,
            defaults={"user_verification": "preferred", "resident_key": "preferred", "rp_name": None},
        ),
        MethodType("totp", False, False, defaults={"digits": 6, "period": 30, "issuer_label": None}),
        MethodType("backup_codes", False, False, defaults={"count": 10}),
    )
}

_RANGES: dict[str, tuple[int, int]] = {
    "min_length": (1, 256),
    "max_length": (8, 1024),
    "ttl": (60, 30 * 86400),
    "length": (8, 64),
    "code_length": (4, 10),
    "max_attempts": (1, 20),
    "digits": (6, 8),
    "period": (15, 120),
    "count": (4, 20),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "user_verification": ("required", "preferred", "discouraged"),
    "resident_key": ("required", "preferred", "discouraged"),
    "token_endpoint_auth": ("post", "basic"),
}
# An ``oauth2`` provider AuthPI has no preset for: a 400 (the request names something unknown).
UNKNOWN_PROVIDER = "unknown_provider"
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,99}$")


def _valid_url(value: str) -> bool:
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.netloc:
        return True
    # Plain HTTP only for local development providers.
    return parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1")


def check_settings(spec: MethodType, settings: dict[str, Any], *, creating: bool) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    if creating:
        for key in spec.required:
            value = settings.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                problems.append(
                    FieldProblem(f"settings.{key}", "required", f"{spec.name} requires settings.{key}")
                )
    for key in spec.required:
        if key in settings and settings[key] is not None and not isinstance(settings[key], str):
            problems.append(
                FieldProblem(f"settings.{key}", "invalid_type", f"settings.{key} must be a string")
            )
    for key in spec.urls:
        value = settings.get(key)
        if isinstance(value, str) and value and not _valid_url(value):
            problems.append(
                FieldProblem(f"settings.{key}", "invalid_url", f"settings.{key} must be an https URL")
            )
    problems.extend(_check_upstream(spec, settings, creating=creating))
    for key, default in spec.defaults.items():
        if key not in settings or key == "claims":
            continue
        value = settings[key]
        if key in _RANGES:
            low, high = _RANGES[key]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                problems.append(
                    FieldProblem(
                        f"settings.{key}", "out_of_range", f"settings.{key} must be from {low} to {high}"
                    )
                )
        elif key in _CHOICES:
            if value not in _CHOICES[key]:
                problems.append(
                    FieldProblem(
                        f"settings.{key}", "invalid_choice", f"settings.{key} must be one of {_CHOICES[key]}"
                    )
                )
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                problems.append(
                    FieldProblem(f"settings.{key}", "invalid_type", f"settings.{key} must be a boolean")
                )
        elif isinstance(default, list):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(
                    FieldProblem(
                        f"settings.{key}", "invalid_type", f"settings.{key} must be a list of strings"
                    )
                )
        elif value is not None and not isinstance(value, str):
            problems.append(
                FieldProblem(f"settings.{key}", "invalid_type", f"settings.{key} must be a string")
            )
    if spec.name == "password":
        low = settings.get("min_length", spec.defaults["min_length"])
        high = settings.get("max_length", spec.defaults["max_length"])
        if isinstance(low, int) and isinstance(high, int) and low > high:
            problems.append(
                FieldProblem("settings.min_length", "out_of_range", "min_length cannot exceed max_length")
            )
    return problems


def _check_upstream(spec: MethodType, settings: dict[str, Any], *, creating: bool) -> list[FieldProblem]:
    """The upstream settings the generic checks cannot express."""
    problems: list[FieldProblem] = []
    provider = settings.get("provider")
    # Only at creation: afterwards the provider cannot change at all (an "immutable" problem).
    if creating and spec.name == "oauth2" and isinstance(provider, str) and provider not in OAUTH2_PROVIDERS:
        message = f"settings.provider must be one of {', '.join(OAUTH2_PROVIDERS)}"
        problems.append(FieldProblem("settings.provider", UNKNOWN_PROVIDER, message))
    tenant = settings.get("tenant")
    if tenant is not None and not (isinstance(tenant, str) and _TENANT.match(tenant)):
        message = "settings.tenant must be a Microsoft Entra tenant ID or domain"
        problems.append(FieldProblem("settings.tenant", "invalid_value", message))
    claims = settings.get("claims")
    if "claims" in settings and spec.name == "oauth2_manual":
        valid = isinstance(claims, dict) and all(
            key in CLAIMS and isinstance(value, str) and 0 < len(value) <= 100
            for key, value in claims.items()
        )
        if not valid:
            message = f"settings.claims maps {', '.join(CLAIMS)} to member names of the user-info answer"
            problems.append(FieldProblem("settings.claims", "invalid_value", message))
    return problems
