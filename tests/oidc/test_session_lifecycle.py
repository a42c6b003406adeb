"""Sessions and tokens end with their cause: a suspended op session holds its clients' tokens, an
admin password reset ends every session, a disabled or deleted client's tokens die with it, a new
sign-in supersedes the browser's previous one, and logout ends only the browser's own sign-in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
import pytest
from authpi_admin.generated.models import IssuerClientsCreateResponse as Client
from authpi_admin.generated.models import PublicSession

from tests.oidc.helpers import (
    LOGOUT_CALLBACK,
    PASSWORD,
    Browser,
    Realm,
    callback_params,
    describe,
    error_of,
    form,
    redirect_target,
    unverified_claims,
)

pytestmark = pytest.mark.anyio

ALICE = "alice@example.com"
BOB = "bob@example.com"
NEW_PASSWORD = "an entirely different passphrase"


# --- probes -----------------------------------------------------------------------------------------


async def userinfo_status(realm: Realm, access_token: str) -> int:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(
            f"{realm.url}/userinfo", headers={"Authorization": f"Bearer {access_token}"}
        )
    return response.status_code


async def core_active(realm: Realm, token: str) -> bool:
    """What the Core API's introspection says (it may describe any client's token)."""
    result: dict[str, Any] = await realm.api.tokens.introspect({"token": token})
    return bool(result["active"])


@dataclass
class Liveness:
    userinfo: int
    access: bool  # IdP introspection of the access token, by its client
    refresh: bool  # IdP introspection of the refresh token, by its client
    core: bool  # Core API introspection of the access token


async def liveness(realm: Realm, client: Client, tokens: dict[str, Any]) -> Liveness:
    return Liveness(
        await userinfo_status(realm, tokens["access_token"]),
        (await realm.introspect(client, tokens["access_token"]))["active"],
        (await realm.introspect(client, tokens["refresh_token"]))["active"],
        await core_active(realm, tokens["access_token"]),
    )


ALIVE = Liveness(200, True, True, True)
DEAD = Liveness(401, False, False, False)


async def silent_with_cookie(realm: Realm, client: Client, cookie: str) -> dict[str, str]:
    """``prompt=none`` from a browser holding only ``cookie`` as its session."""
    auth = realm.request(client.id, prompt="none")
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(auth.url, headers={"Cookie": f"authpi_session={cookie}"})
    return callback_params(response)


async def sign_in_for_tokens(
    realm: Realm, browser: Browser, client: Client, username: str, password: str = PASSWORD, **request: str
) -> dict[str, Any]:
    """Sign in (or single sign-on) in ``browser`` and redeem the code."""
    auth = realm.request(client.id, **request)
    params = callback_params(await browser.visit(auth.url, username, password))
    assert "code" in params, params
    response = await realm.exchange(client, params["code"], auth)
    assert response.status_code == 200, describe(response)
    body: dict[str, Any] = response.json()
    return body


def sid_of(tokens: dict[str, Any]) -> str:
    """The rp session the tokens belong to."""
    return str(unverified_claims(tokens["access_token"])["sid"])


async def by_type(realm: Realm, user_id: str) -> dict[str, list[PublicSession]]:
    found: dict[str, list[PublicSession]] = {"op": [], "rp": []}
    for row in await realm.sessions(user_id):
        found[row.type].append(row)
    return found


# --- op session suspension --------------------------------------------------------------------------


async def test_a_suspended_op_session_holds_its_client_tokens_until_reactivated(
    realm: Realm, browser: Browser
) -> None:
    client = await realm.client()
    user = await realm.user(ALICE)
    tokens = await sign_in_for_tokens(realm, browser, client, ALICE)
    pending_code, pending_auth = await realm.code(browser, client, ALICE)  # single sign-on, not redeemed
    sessions = await by_type(realm, user.id)
    (op,) = sessions["op"]
    assert all(rp.expires_at <= op.expires_at for rp in sessions["rp"])  # never outlives the sign-in
    assert await liveness(realm, client, tokens) == ALIVE

    await realm.api.sessions.suspend(op.id, {"reason": "investigation"})
    assert await liveness(realm, client, tokens) == DEAD
    refused = await realm.refresh(client, tokens["refresh_token"])
    assert (refused.status_code, error_of(refused)) == (400, "invalid_grant"), describe(refused)
    held = await realm.exchange(client, pending_code, pending_auth)
    assert (held.status_code, error_of(held)) == (400, "invalid_grant"), describe(held)
    assert callback_params(await browser.get(realm.request(client.id, prompt="none").url))["error"] == (
        "login_required"
    )
    # Suspension is a hold, not an end: the client sessions keep their own status.
    assert {rp.status for rp in (await by_type(realm, user.id))["rp"]} >= {"active"}

    await realm.api.sessions.reactivate(op.id)
    assert await liveness(realm, client, tokens) == ALIVE
    refreshed = await realm.refresh(client, tokens["refresh_token"])
    assert refreshed.status_code == 200, describe(refreshed)
    assert await userinfo_status(realm, refreshed.json()["access_token"]) == 200


# --- password changes by an administrator -----------------------------------------------------------


async def test_an_admin_password_change_ends_every_session_of_the_user(
    realm: Realm, browser: Browser
) -> None:
    client = await realm.client()
    user = await realm.user(ALICE)
    tokens = await sign_in_for_tokens(realm, browser, client, ALICE)
    async with Browser(realm.server_url) as elsewhere:
        other_device = await sign_in_for_tokens(realm, elsewhere, client, ALICE)

    await realm.api.users.update(user.id, {"password": NEW_PASSWORD})
    for issued in (tokens, other_device):
        assert await liveness(realm, client, issued) == DEAD
        refused = await realm.refresh(client, issued["refresh_token"])
        assert (refused.status_code, error_of(refused)) == (400, "invalid_grant"), describe(refused)
    rows = await realm.sessions(user.id)
    assert {(s.status, s.revoked_reason) for s in rows} == {("revoked", "password_changed")}
    assert "error" in callback_params(await browser.get(realm.request(client.id, prompt="none").url))

    # The new password signs in; removing the password ends that session as well.
    async with Browser(realm.server_url) as again:
        renewed = await sign_in_for_tokens(realm, again, client, ALICE, NEW_PASSWORD)
    assert await liveness(realm, client, renewed) == ALIVE
    await realm.api.users.update(user.id, {"password": None})
    assert await liveness(realm, client, renewed) == DEAD
    assert (await realm.api.sessions.get(sid_of(renewed))).revoked_reason == "password_removed"


# --- disabled and deleted clients ---------------------------------------------------------------------


async def client_credentials_token(realm: Realm, m2m: Client) -> str:
    response = await realm.token(m2m, grant_type="client_credentials")
    assert response.status_code == 200, describe(response)
    return str(response.json()["access_token"])


async def test_a_disabled_client_s_tokens_are_inactive_and_stay_so_when_it_returns(
    realm: Realm, browser: Browser
) -> None:
    client, m2m = await realm.client(), await realm.client("m2m", scopes=["reports:read"])
    user = await realm.user(ALICE)
    tokens = await sign_in_for_tokens(realm, browser, client, ALICE)
    machine = await client_credentials_token(realm, m2m)
    assert await userinfo_status(realm, tokens["access_token"]) == 200 and await core_active(realm, machine)

    await realm.api.clients.update(client.id, {"status": "disabled"})
    await realm.api.clients.update(m2m.id, {"status": "disabled"})
    assert await userinfo_status(realm, tokens["access_token"]) == 401
    for token in (tokens["access_token"], tokens["refresh_token"], machine):
        assert not await core_active(realm, token)
    assert {(s.type, s.status, s.revoked_reason) for s in await realm.sessions(user.id)} == {
        ("op", "active", None),  # the browser's sign-in is not the client's
        ("rp", "revoked", "client_disabled"),
    }

    # Enabling the client again does not bring back what it had issued to users.
    await realm.api.clients.update(client.id, {"status": "active"})
    assert await liveness(realm, client, tokens) == DEAD
    refused = await realm.refresh(client, tokens["refresh_token"])
    assert (refused.status_code, error_of(refused)) == (400, "invalid_grant"), describe(refused)


async def test_a_deleted_client_s_tokens_are_inactive(realm: Realm, browser: Browser) -> None:
    client, m2m = await realm.client(), await realm.client("m2m", scopes=["reports:read"])
    await realm.user(ALICE)
    tokens = await sign_in_for_tokens(realm, browser, client, ALICE)
    machine = await client_credentials_token(realm, m2m)
    await realm.api.clients.delete(client.id)
    await realm.api.clients.delete(m2m.id)
    assert await userinfo_status(realm, tokens["access_token"]) == 401
    for token in (tokens["access_token"], tokens["refresh_token"], machine):
        assert not await core_active(realm, token)


async def test_a_disabled_issuer_s_tokens_are_inactive_at_core_introspection(
    realm: Realm, browser: Browser
) -> None:
    client, m2m = await realm.client(), await realm.client("m2m", scopes=["reports:read"])
    await realm.user(ALICE)
    tokens = await sign_in_for_tokens(realm, browser, client, ALICE)
    machine = await client_credentials_token(realm, m2m)
    await realm.admin.issuer(realm.id).update({"status": "suspended"})
    for token in (tokens["access_token"], tokens["refresh_token"], machine):
        result = await realm.api.tokens.introspect({"token": token})
        assert result == {"active": False, "reason": "issuer_not_active"}, result
    await realm.admin.issuer(realm.id).update({"status": "active"})
    assert await core_active(realm, machine)


# --- signing in again -----------------------------------------------------------------------------------


@pytest.mark.parametrize("again", [{"prompt": "login"}, {"max_age": "0"}])
async def test_signing_in_again_supersedes_the_browser_s_previous_sign_in(
    realm: Realm, browser: Browser, again: dict[str, str]
) -> None:
    first_app, second_app = await realm.client(), await realm.client()
    user = await realm.user(ALICE)
    first = await sign_in_for_tokens(realm, browser, first_app, ALICE)
    old_cookie = browser.session_cookie
    assert old_cookie and "code" in await silent_with_cookie(realm, first_app, old_cookie)
    before = await realm.api.sessions.get(sid_of(first))

    second = await sign_in_for_tokens(realm, browser, second_app, ALICE, **again)
    assert browser.session_cookie not in (None, old_cookie)
    assert (await silent_with_cookie(realm, first_app, old_cookie))["error"] == "login_required"
    sessions = await by_type(realm, user.id)
    old_op, new_op = sorted(sessions["op"], key=lambda s: s.created_at)
    assert (old_op.status, old_op.revoked_reason) == ("revoked", "superseded")
    assert new_op.status == "active"
    # The same user's applications keep their sessions, now under the new sign-in ...
    assert await liveness(realm, first_app, first) == ALIVE
    assert {s.op_session_id for s in sessions["rp"]} == {new_op.id}
    moved = await realm.api.sessions.get(sid_of(first))
    assert moved.updated_at is not None and before.updated_at is not None
    assert moved.updated_at > before.updated_at  # a new ETag for the changed op_session_id
    # ... so signing out of the browser still ends all of them.
    hint = {"id_token_hint": second["id_token"], "post_logout_redirect_uri": LOGOUT_CALLBACK}
    out = await browser.http.get(f"{realm.url}/logout?{urlencode(hint)}")
    assert redirect_target(out) == LOGOUT_CALLBACK
    assert await liveness(realm, first_app, first) == DEAD


async def test_another_user_signing_in_ends_the_previous_user_s_browser_session(
    realm: Realm, browser: Browser
) -> None:
    client = await realm.client()
    alice, bob = await realm.user(ALICE), await realm.user(BOB)
    alices = await sign_in_for_tokens(realm, browser, client, ALICE)
    old_cookie = browser.session_cookie
    assert old_cookie

    bobs = await sign_in_for_tokens(realm, browser, client, BOB, prompt="login")
    assert (await silent_with_cookie(realm, client, old_cookie))["error"] == "login_required"
    assert {(s.status, s.revoked_reason) for s in await realm.sessions(alice.id)} == {
        ("revoked", "superseded")
    }
    assert await liveness(realm, client, alices) == DEAD
    assert await liveness(realm, client, bobs) == ALIVE
    assert {s.status for s in await realm.sessions(bob.id)} == {"active"}


# --- logout -------------------------------------------------------------------------------------------


def logout_url(realm: Realm, **params: str) -> str:
    return f"{realm.url}/logout?{urlencode(params)}"


def is_confirmation(page: httpx.Response) -> bool:
    return page.status_code == 200 and "location" not in page.headers and bool(form(page, "/logout"))


async def statuses(realm: Realm, user_id: str) -> set[str]:
    return {s.status for s in await realm.sessions(user_id)}


async def test_logout_with_the_browser_s_own_hint_needs_no_confirmation(
    realm: Realm, browser: Browser
) -> None:
    client = await realm.client()
    user = await realm.user(ALICE)
    tokens = await sign_in_for_tokens(realm, browser, client, ALICE)
    out = await browser.http.get(
        logout_url(
            realm, id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGOUT_CALLBACK, state="x"
        )
    )
    assert redirect_target(out) == f"{LOGOUT_CALLBACK}?state=x"
    assert browser.session_cookie is None
    assert {(s.status, s.revoked_reason) for s in await realm.sessions(user.id) if s.type == "op"} == {
        ("revoked", "logout")
    }
    assert await liveness(realm, client, tokens) == DEAD


async def test_logout_with_another_user_s_hint_asks_first_and_ends_only_this_browser(
    realm: Realm, browser: Browser
) -> None:
    client = await realm.client()
    alice, bob = await realm.user(ALICE), await realm.user(BOB)
    await sign_in_for_tokens(realm, browser, client, ALICE)
    async with Browser(realm.server_url) as bobs_browser:
        bobs = await sign_in_for_tokens(realm, bobs_browser, client, BOB)

    query = {"id_token_hint": bobs["id_token"], "post_logout_redirect_uri": LOGOUT_CALLBACK, "state": "s"}
    page = await browser.get(logout_url(realm, **query))
    assert is_confirmation(page), describe(page)
    assert ALICE in page.text  # the page names who is signed in here
    assert await statuses(realm, alice.id) == {"active"}
    assert await statuses(realm, bob.id) == {"active"}

    done = await browser.submit(page, {})
    assert redirect_target(done) == f"{LOGOUT_CALLBACK}?state=s"  # the hint identified the client
    assert await statuses(realm, alice.id) == {"revoked"}
    assert await statuses(realm, bob.id) == {"active"}  # never another browser's sign-in
    assert await liveness(realm, client, bobs) == ALIVE


async def test_a_hint_is_never_a_remote_kill_switch(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    user = await realm.user(ALICE)
    tokens = await sign_in_for_tokens(realm, browser, client, ALICE)
    query = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": LOGOUT_CALLBACK}

    # A client without any session: nothing of this user's ends, it is only sent back.
    async with httpx.AsyncClient(timeout=30) as stranger:
        out = await stranger.get(logout_url(realm, **query))
    assert redirect_target(out) == LOGOUT_CALLBACK
    # The same user signed in on another device: that browser is asked, and a GET ends nothing.
    async with Browser(realm.server_url) as other_device:
        await sign_in_for_tokens(realm, other_device, client, ALICE)
        page = await other_device.get(logout_url(realm, **query))
        assert is_confirmation(page), describe(page)
    assert await statuses(realm, user.id) == {"active"}
    assert await liveness(realm, client, tokens) == ALIVE


async def test_an_expired_own_hint_identifies_the_client_but_needs_confirmation(
    realm: Realm, browser: Browser
) -> None:
    client = await realm.client(id_token_ttl=60)
    user = await realm.user(ALICE)
    tokens = await sign_in_for_tokens(realm, browser, client, ALICE)
    await anyio.sleep(61)  # the shortest ID-token lifetime a client may have
    query = {
        "id_token_hint": tokens["id_token"],
        "post_logout_redirect_uri": LOGOUT_CALLBACK,
        "state": "late",
    }
    page = await browser.get(logout_url(realm, **query))
    assert is_confirmation(page), describe(page)
    assert await statuses(realm, user.id) == {"active"}
    done = await browser.submit(page, {})
    assert redirect_target(done) == f"{LOGOUT_CALLBACK}?state=late"
    assert await statuses(realm, user.id) == {"revoked"}
