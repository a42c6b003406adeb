"""Every change that gives an API key power again is a grant: unblocking, reactivating, clearing or
extending its expiry, lifting or widening its IP allowlist, rotating. A caller must hold the key's
scopes to make one (no escalation through ``api_keys:manage``); changes that only take power away
stay open to ``api_keys:manage``. ``restrictions`` is patched field by field."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import AuthenticationError, ForbiddenError

from tests.core.conftest import ClientFactory, KeyMaker
from tests.harness import RunningServer

pytestmark = pytest.mark.anyio

Change = Callable[[AuthPIAdmin, str], Awaitable[Any]]
HOUR_MS = 3600_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _patch(body: Callable[[], dict[str, Any]]) -> Change:
    async def change(client: AuthPIAdmin, key_id: str) -> Any:
        return await client.api_keys.update(key_id, body())

    return change


async def _unblock(client: AuthPIAdmin, key_id: str) -> Any:
    return await client.api_keys.unblock(key_id)


async def _rotate(client: AuthPIAdmin, key_id: str) -> Any:
    return await client.api_keys.rotate(key_id)


async def _block(admin: AuthPIAdmin, key_id: str) -> None:
    await admin.api_keys.block(key_id, {"reason": "incident"})


async def _suspend(admin: AuthPIAdmin, key_id: str) -> None:
    await admin.api_keys.update(key_id, {"status": "suspended"})


async def _let_expire(admin: AuthPIAdmin, key_id: str) -> None:
    await asyncio.sleep(1.6)
    assert (await admin.api_keys.get(key_id)).status == "expired"


@dataclass(frozen=True)
class Grant:
    change: Change
    create: Callable[[], dict[str, Any]] = dict  # extra fields of the target's create request
    before: Callable[[AuthPIAdmin, str], Awaitable[None]] | None = None  # done by an admin first
    networks: list[str] | None = field(default=None)


GRANTS = {
    "unblock": Grant(_unblock, before=_block),
    "patch_blocked_to_active": Grant(_patch(lambda: {"status": "active"}), before=_block),
    "unblock_suspended": Grant(_unblock, before=_suspend),
    "patch_suspended_to_active": Grant(_patch(lambda: {"status": "active"}), before=_suspend),
    "clear_expiry": Grant(
        _patch(lambda: {"expires_at": None}), create=lambda: {"expires_at": _now_ms() + HOUR_MS}
    ),
    "extend_expiry": Grant(
        _patch(lambda: {"expires_at": _now_ms() + 48 * HOUR_MS}),
        create=lambda: {"expires_at": _now_ms() + HOUR_MS},
    ),
    "revive_expired": Grant(
        _patch(lambda: {"expires_at": _now_ms() + HOUR_MS}),
        create=lambda: {"expires_at": _now_ms() + 1000},
        before=_let_expire,
    ),
    "remove_allowlist": Grant(
        _patch(lambda: {"restrictions": {"ip_addresses": None}}), networks=["10.0.0.0/8"]
    ),
    "empty_allowlist": Grant(_patch(lambda: {"restrictions": {"ip_addresses": []}}), networks=["10.0.0.0/8"]),
    "widen_allowlist": Grant(
        _patch(lambda: {"restrictions": {"ip_addresses": ["10.0.0.0/8"]}}), networks=["10.1.0.0/16"]
    ),
    "add_network": Grant(
        _patch(lambda: {"restrictions": {"ip_addresses": ["10.1.0.0/16", "127.0.0.1"]}}),
        networks=["10.1.0.0/16"],
    ),
    "rotate": Grant(_rotate),
}


async def _target(admin: AuthPIAdmin, make_key: KeyMaker, grant: Grant) -> str:
    restrictions: dict[str, Any] = {"scopes": ["*"]}
    if grant.networks is not None:
        restrictions["ip_addresses"] = grant.networks
    key = await make_key(["*"], restrictions=restrictions, **grant.create())
    if grant.before is not None:
        await grant.before(admin, key.id)
    return key.id


@pytest.mark.parametrize("grant", GRANTS.values(), ids=GRANTS.keys())
async def test_a_manage_only_key_cannot_give_a_wildcard_key_power(
    grant: Grant, admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    manager = await make_key(["api_keys:manage"])
    target = await _target(admin, make_key, grant)
    unchanged = await admin.api_keys.get(target)
    async with client_for(manager.id, manager.secret_plain) as client:
        with pytest.raises(ForbiddenError) as refused:
            await grant.change(client, target)
    assert refused.value.status_code == 403
    after = await admin.api_keys.get(target)
    assert after._etag == unchanged._etag
    assert (after.status, after.expires_at, after.restrictions) == (
        unchanged.status,
        unchanged.expires_at,
        unchanged.restrictions,
    )


@pytest.mark.parametrize("grant", GRANTS.values(), ids=GRANTS.keys())
async def test_a_wildcard_key_can_make_the_same_change(
    grant: Grant, admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    root = await make_key(["*"])
    target = await _target(admin, make_key, grant)
    unchanged = await admin.api_keys.get(target)
    async with client_for(root.id, root.secret_plain) as client:
        await grant.change(client, target)
    assert (await admin.api_keys.get(target))._etag != unchanged._etag


async def test_the_blocked_key_stays_blocked(
    admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    manager = await make_key(["api_keys:manage"])
    target = await make_key(["*"])
    await admin.api_keys.block(target.id)
    async with client_for(manager.id, manager.secret_plain) as client:
        with pytest.raises(ForbiddenError):
            await client.api_keys.unblock(target.id)
    async with client_for(target.id, target.secret_plain) as revived:
        with pytest.raises(AuthenticationError):
            await revived.whoami()


async def test_a_manage_only_key_may_still_take_power_away(
    admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    manager = await make_key(["api_keys:manage"])
    scoped = await make_key(["*"], restrictions={"scopes": ["*"], "ip_addresses": ["10.0.0.0/8"]})
    later = _now_ms() + HOUR_MS
    async with client_for(manager.id, manager.secret_plain) as client:
        narrowed = await client.api_keys.update(
            scoped.id,
            {
                "name": "narrowed",
                "expires_at": later,
                "restrictions": {"scopes": ["issuers:read"], "ip_addresses": ["10.1.0.0/16"]},
            },
        )
        assert narrowed.restrictions == {"scopes": ["issuers:read"], "ip_addresses": ["10.1.0.0/16"]}
        sooner = await client.api_keys.update(scoped.id, {"expires_at": later - 1000})
        assert sooner.expires_at == later - 1000
        assert (await client.api_keys.update(scoped.id, {"status": "suspended"})).status == "suspended"

        for change in (client.api_keys.block, client.api_keys.revoke):
            wildcard = await make_key(["*"])
            assert (await change(wildcard.id)).status in ("blocked", "revoked")


async def test_a_manage_only_key_may_revive_a_key_it_could_have_created(
    admin: AuthPIAdmin, make_key: KeyMaker, client_for: ClientFactory
) -> None:
    manager = await make_key(["api_keys:manage", "issuers:read"])
    target = await make_key(["issuers:read"], expires_at=_now_ms() + HOUR_MS)
    await admin.api_keys.block(target.id)
    async with client_for(manager.id, manager.secret_plain) as client:
        assert (await client.api_keys.unblock(target.id)).status == "active"
        assert (await client.api_keys.update(target.id, {"expires_at": None})).expires_at is None
    # Reviving a wildcard key while cutting it down to what the caller holds is fine too.
    wildcard = await make_key(["*"])
    await admin.api_keys.block(wildcard.id)
    async with client_for(manager.id, manager.secret_plain) as client:
        revived = await client.api_keys.update(
            wildcard.id, {"status": "active", "restrictions": {"scopes": ["issuers:read"]}}
        )
    assert (revived.status, revived.restrictions["scopes"]) == ("active", ["issuers:read"])


async def test_restrictions_are_patched_field_by_field(admin: AuthPIAdmin, make_key: KeyMaker) -> None:
    key = await make_key(["*"], restrictions={"scopes": ["issuers:read"], "ip_addresses": ["10.0.0.0/8"]})

    scopes_only = await admin.api_keys.update(key.id, {"restrictions": {"scopes": ["issuers:write"]}})
    assert scopes_only.restrictions == {"scopes": ["issuers:write"], "ip_addresses": ["10.0.0.0/8"]}

    networks_only = await admin.api_keys.update(key.id, {"restrictions": {"ip_addresses": ["10.1.0.0/16"]}})
    assert networks_only.restrictions == {"scopes": ["issuers:write"], "ip_addresses": ["10.1.0.0/16"]}

    untouched = await admin.api_keys.update(key.id, {"restrictions": {}, "description": "x"})
    assert untouched.restrictions == networks_only.restrictions

    lifted = await admin.api_keys.update(key.id, {"restrictions": {"ip_addresses": None}})
    assert lifted.restrictions == {"scopes": ["issuers:write"]}
    stored = await admin.api_keys.get(key.id)
    assert stored.restrictions == {"scopes": ["issuers:write"]}


async def test_a_key_cannot_grant_access_from_outside_its_own_allowlist(
    make_key: KeyMaker, client_for: ClientFactory, unique: str
) -> None:
    local = await make_key(["*"], restrictions={"scopes": ["*"], "ip_addresses": ["127.0.0.0/8"]})
    anywhere = await make_key(["issuers:read"])
    async with client_for(local.id, local.secret_plain) as client:
        for networks in (None, [], ["10.0.0.0/8"], ["127.0.0.1", "0.0.0.0/0"]):
            restrictions: dict[str, Any] = {"scopes": ["issuers:read"]}
            if networks is not None:
                restrictions["ip_addresses"] = networks
            with pytest.raises(ForbiddenError):
                await client.api_keys.create({"name": f"wide-{unique}", "restrictions": restrictions})
        with pytest.raises(ForbiddenError):
            await client.api_keys.update(local.id, {"restrictions": {"ip_addresses": None}})
        with pytest.raises(ForbiddenError):
            await client.api_keys.rotate(anywhere.id)  # its secret works from anywhere
        inside = await client.api_keys.create(
            {"name": f"inside-{unique}", "restrictions": {"scopes": ["*"], "ip_addresses": ["127.0.0.1"]}}
        )
        assert inside.restrictions["ip_addresses"] == ["127.0.0.1"]


async def test_a_key_cannot_grant_access_that_outlives_it(
    make_key: KeyMaker, client_for: ClientFactory, unique: str
) -> None:
    ends = _now_ms() + HOUR_MS
    mortal = await make_key(["*"], expires_at=ends)
    immortal = await make_key(["issuers:read"])
    async with client_for(mortal.id, mortal.secret_plain) as client:
        for expires_at in (None, ends + 1):
            with pytest.raises(ForbiddenError):
                await client.api_keys.create(
                    {
                        "name": f"long-{unique}",
                        "restrictions": {"scopes": ["issuers:read"]},
                        "expires_at": expires_at,
                    }
                )
        with pytest.raises(ForbiddenError):
            await client.api_keys.update(mortal.id, {"expires_at": ends + HOUR_MS})
        with pytest.raises(ForbiddenError):
            await client.api_keys.rotate(immortal.id)
        shorter = await client.api_keys.create(
            {"name": f"short-{unique}", "restrictions": {"scopes": ["*"]}, "expires_at": ends}
        )
        assert shorter.expires_at == ends


async def _patch_until_settled(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    """PATCH, retrying retryable answers as a client does."""
    while True:
        answer = await client.patch(path, json=body)
        if answer.status_code not in (409, 503):
            return answer
        assert answer.json()["retryable"] is True


async def test_a_concurrent_admin_change_cannot_be_turned_into_a_grant(
    server: RunningServer, admin: AuthPIAdmin, make_key: KeyMaker, account_path: str
) -> None:
    """An admin gives a key an expiry while a manage-only key moves it later, all at once. Whatever
    the order, the admin's expiry must stand: moving it later afterwards is a grant the manager lacks,
    so a manager's change decided on the state before the admin's must not overwrite it."""
    manager = await make_key(["api_keys:manage"])
    as_manager = (manager.id, manager.secret_plain)
    for _ in range(12):
        target = await make_key(["*"])
        soon, later = _now_ms() + HOUR_MS, _now_ms() + 2 * HOUR_MS
        path = f"{account_path}/api-keys/{target.id}"
        async with (
            httpx.AsyncClient(base_url=server.url, auth=server.api_key, timeout=30) as root,
            httpx.AsyncClient(base_url=server.url, auth=as_manager, timeout=30) as mgr,
        ):
            answers = await asyncio.gather(
                *(mgr.patch(path, json={"expires_at": later}) for _ in range(8)),
                _patch_until_settled(root, path, {"expires_at": soon}),
                *(mgr.patch(path, json={"expires_at": later}) for _ in range(8)),
            )
        assert answers[8].status_code == 200, answers[8].text
        assert {a.status_code for a in answers} <= {200, 403, 409, 503}, [a.text for a in answers]
        assert (await admin.api_keys.get(target.id)).expires_at == soon
