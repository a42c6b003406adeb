"""Every route of the account portal, for the IdP application."""

from __future__ import annotations

from starlette.routing import Route

from authpi.oidc.portal import (
    consents,
    devices,
    email,
    factors,
    overview,
    passkeys,
    password,
    phone,
    profile,
    sessions,
)


def routes() -> list[Route]:
    found: list[Route] = []
    for module in (overview, profile, email, phone, password, sessions, consents, factors, passkeys, devices):
        found.extend(module.router.routes)
    return found
