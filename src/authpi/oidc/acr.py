"""Authentication context classes: what ``acr_values`` may ask for and what the ID token's ``acr``
says. Two levels: one factor, and several (``amr`` contains ``mfa``, RFC 8176)."""

from __future__ import annotations

from collections.abc import Sequence

SINGLE_FACTOR = "urn:authpi:acr:sfa"
MULTI_FACTOR = "urn:authpi:acr:mfa"
SUPPORTED = (SINGLE_FACTOR, MULTI_FACTOR)


def of(amr: Sequence[str]) -> str:
    """The ``acr`` of a sign-in that proved ``amr``."""
    return MULTI_FACTOR if "mfa" in amr else SINGLE_FACTOR


def asks_mfa(acr_values: Sequence[str]) -> bool:
    """Whether the request accepts only a multi-factor sign-in: it names the multi-factor class and
    no class one factor satisfies (the values are alternatives, OIDC Core §3.1.2.1)."""
    return MULTI_FACTOR in acr_values and SINGLE_FACTOR not in acr_values


def satisfied(acr_values: Sequence[str], amr: Sequence[str]) -> bool:
    """Whether a sign-in that proved ``amr`` is enough for the request's ``acr_values``."""
    return not asks_mfa(acr_values) or "mfa" in amr
