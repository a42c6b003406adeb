"""A worker keeps the row of a key that authenticated for a few seconds (services.api_keys), so a busy
key costs no lookup. Every change of the key must still take effect on the next request: each test
first uses the key (its row is now cached) and then changes it."""

from __future__ import annotations

import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import AuthenticationError, ForbiddenError
from authpi_admin.generated.models import Issuer

from tests.core.conftest import ClientFactory, KeyMaker

pytestmark = pytest.mark.anyio


async def _works(client_for: ClientFactory, key_id: str, secret: str) -> bool:
    async with client_for(key_id, secret) as client:
        try:
            await client.whoami()
        except AuthenticationError:
            return False
    return True


async def test_a_used_key_stops_working_when_blocked_and_works_again_when_unblocked(
    admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    key = await make_key([])
    assert await _works(client_for, key.id, key.secret_plain)
    blocked = await admin.api_keys.block(key.id, {"reason": "suspicious"})
    assert not await _works(client_for, key.id, key.secret_plain)
    await admin.api_keys.unblock(key.id, if_match=blocked._etag)
    assert await _works(client_for, key.id, key.secret_plain)


async def test_a_used_key_stops_working_when_revoked(
    admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    key = await make_key([])
    assert await _works(client_for, key.id, key.secret_plain)
    await admin.api_keys.revoke(key.id, {"reason": "leaked"})
    assert not await _works(client_for, key.id, key.secret_plain)


async def test_the_old_secret_of_a_used_key_stops_working_when_rotated(
    admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    key = await make_key([])
    assert await _works(client_for, key.id, key.secret_plain)
    rotated = await admin.api_keys.rotate(key.id)
    assert not await _works(client_for, key.id, key.secret_plain)
    assert await _works(client_for, key.id, rotated.secret_plain)


async def test_a_used_key_loses_a_scope_at_once(
    admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory, issuer: Issuer
) -> None:
    key = await make_key(["issuers:read"])
    async with client_for(key.id, key.secret_plain) as client:
        assert (await client.issuers.get(issuer.id)).id == issuer.id
        await admin.api_keys.update(key.id, {"restrictions": {"scopes": []}})
        with pytest.raises(ForbiddenError):
            await client.issuers.get(issuer.id)


async def test_a_wrong_secret_is_refused_for_a_cached_key_and_does_not_lock_out_the_right_one(
    make_key: KeyMaker, client_for: ClientFactory
) -> None:
    key = await make_key([])
    assert await _works(client_for, key.id, key.secret_plain)
    wrong = key.secret_plain[:-1] + ("a" if key.secret_plain[-1] != "a" else "b")
    assert not await _works(client_for, key.id, wrong)
    assert await _works(client_for, key.id, key.secret_plain)
