from __future__ import annotations

import pytest
from authpi_admin import AuthPIAdmin

from tests.harness import RunningServer

pytestmark = pytest.mark.anyio


async def test_whoami_resolves_the_account(admin: AuthPIAdmin, server: RunningServer) -> None:
    me = await admin.whoami()
    assert me["type"] == "api_key"
    assert me["accounts"][0]["account_id"] == server.account_id
    issuer = await admin.issuers.create({"name": "Smoke"})
    assert issuer.account_id == server.account_id
