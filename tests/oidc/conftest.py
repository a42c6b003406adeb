"""Fixtures of the OpenID Connect end-to-end suite: a fresh issuer and a browser per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from authpi_admin import AuthPIAdmin

from tests.harness import RunningServer
from tests.oidc.helpers import Browser, Realm, new_realm


@pytest.fixture
async def realm(admin: AuthPIAdmin, server: RunningServer) -> Realm:
    """An issuer owned by this test only, with the password sign-in method."""
    return await new_realm(admin, server)


@pytest.fixture
async def browser(server: RunningServer) -> AsyncIterator[Browser]:
    async with Browser(server.url) as driver:
        yield driver
