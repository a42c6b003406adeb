"""The official ``authpi-idp`` 1.1.2 SDK against the real provider: the authorization-code flow
through the hosted login pages, refresh, userinfo, revocation, RP-initiated logout, and
client_credentials (idp-api §A, Appendix 1)."""

from __future__ import annotations

import importlib.metadata

import pytest
from authpi_idp import IdpClient, LogoutOptions, OAuthError, PrincipalType, RefreshError
from joserfc import jwt

from tests.oidc.helpers import (
    CALLBACK,
    LOGOUT_CALLBACK,
    Browser,
    Realm,
    callback_params,
    describe,
    fetch_jwks,
    redirect_target,
    unverified_claims,
)

pytestmark = pytest.mark.anyio

EMAIL = "Ada.Lovelace@example.com"


def test_the_pinned_sdk_is_installed() -> None:
    assert importlib.metadata.version("authpi-idp") == "1.1.2"


async def test_code_flow_refresh_userinfo_revoke_and_logout(realm: Realm, browser: Browser) -> None:
    client = await realm.client("web")
    user = await realm.user(EMAIL, first_name="Ada", last_name="Lovelace")
    async with IdpClient(
        issuer_url=realm.url, client_id=client.id, client_secret=client.secret, redirect_uri=CALLBACK
    ) as idp:
        auth = idp.create_authorization_url(["openid", "profile", "email"])
        # The SDK's URL, opened in the browser, through the identifier and password pages.
        response = await browser.sign_in(auth.url, EMAIL.lower())
        callback = redirect_target(response)
        assert callback_params(response)["iss"] == realm.url
        agent = await idp.exchange_callback(callback, auth)  # checks state and nonce
        assert (agent.id, agent.type) == (user.id, PrincipalType.USER)
        assert (agent.email, agent.email_verified) == (EMAIL, False)
        assert agent.organizations == [] and agent.org_id is None
        assert agent.tokens.scope == "openid profile email"
        assert agent.tokens.refresh_token and agent.tokens.id_token

        sessions = {s.type: s for s in await realm.sessions(user.id)}
        assert set(sessions) == {"op", "rp"}
        assert sessions["rp"].op_session_id == sessions["op"].id
        assert sessions["rp"].id == unverified_claims(agent.tokens.id_token)["sid"]
        assert sessions["rp"].status == sessions["op"].status == "active"

        refreshed = await idp.refresh(agent)
        assert refreshed.id == user.id and refreshed.email == EMAIL
        assert refreshed.tokens.refresh_token not in (None, agent.tokens.refresh_token)
        assert refreshed.tokens.access_token != agent.tokens.access_token
        assert refreshed.tokens.scope == "openid profile email"

        info = await idp.get_user_info(refreshed)
        assert info.sub == user.id
        assert (info.email, info.email_verified) == (EMAIL, False)
        assert (info.name, info.given_name, info.family_name) == ("Ada Lovelace", "Ada", "Lovelace")
        assert info.organizations == [] and info.org_id is None
        assert isinstance(info.created_at, int) and isinstance(info.updated_at, int)

        await idp.revoke_token(refreshed.tokens.refresh_token or "", "refresh_token")
        with pytest.raises(RefreshError) as revoked:
            await idp.refresh(refreshed)
        assert (revoked.value.error, revoked.value.status_code) == ("invalid_grant", 400)

        logout = idp.create_logout_url(
            LogoutOptions(
                id_token_hint=refreshed.tokens.id_token,
                post_logout_redirect_uri=LOGOUT_CALLBACK,
                state="bye-42",
            )
        )
        response = await browser.http.get(logout)  # the browser follows the app's logout link
        assert response.status_code == 303, describe(response)
        assert response.headers["location"] == f"{LOGOUT_CALLBACK}?state=bye-42"
        assert browser.session_cookie is None  # the cookie was cleared

        with pytest.raises(OAuthError):
            await idp.get_user_info(refreshed)  # the access token died with its session

    after = {s.type: s for s in await realm.sessions(user.id)}
    assert after["op"].status == "revoked" and after["op"].revoked_reason == "logout"
    assert after["rp"].status == "revoked"
    assert (await realm.api.sessions.get(after["op"].id)).status == "revoked"
    # Without its session the browser has to sign in again.
    again = await browser.get(idp.create_authorization_url(["openid"]).url)
    assert again.url.path.endswith("/login"), describe(again)


async def test_logout_ends_every_client_session_of_the_browser(realm: Realm, browser: Browser) -> None:
    first, second = await realm.client("web"), await realm.client("web")
    user = await realm.user(EMAIL)
    agents = []
    for client in (first, second):  # the second sign-in is single sign-on, without a password
        async with IdpClient(
            issuer_url=realm.url, client_id=client.id, client_secret=client.secret, redirect_uri=CALLBACK
        ) as idp:
            auth = idp.create_authorization_url(["openid", "email"])
            response = await browser.visit(auth.url, EMAIL)
            agents.append(await idp.exchange_callback(redirect_target(response), auth))
    assert len({s.op_session_id for s in await realm.sessions(user.id) if s.type == "rp"}) == 1

    async with IdpClient(
        issuer_url=realm.url, client_id=first.id, client_secret=first.secret, redirect_uri=CALLBACK
    ) as idp:
        hint = agents[0].tokens.id_token
        url = idp.create_logout_url(
            LogoutOptions(id_token_hint=hint, post_logout_redirect_uri=LOGOUT_CALLBACK)
        )
        response = await browser.http.get(url)
        assert response.status_code == 303 and response.headers["location"] == LOGOUT_CALLBACK
    assert {s.status for s in await realm.sessions(user.id)} == {"revoked"}
    async with IdpClient(
        issuer_url=realm.url, client_id=second.id, client_secret=second.secret, redirect_uri=CALLBACK
    ) as idp:
        with pytest.raises(RefreshError):
            await idp.refresh(agents[1])  # the other client's family ended with the OP session


async def test_client_credentials_for_an_m2m_client(realm: Realm) -> None:
    m2m = await realm.client("m2m", scopes=["invoices:read", "invoices:write"])
    async with IdpClient(issuer_url=realm.url, client_id=m2m.id, client_secret=m2m.secret) as idp:
        everything = await idp.client_credentials()
        assert everything.id == m2m.id
        assert everything.tokens.scope == "invoices:read invoices:write"  # default: all configured
        assert everything.tokens.refresh_token is None and everything.tokens.id_token is None

        subset = await idp.client_credentials(["invoices:read"])
        assert subset.tokens.scope == "invoices:read"

        with pytest.raises(OAuthError) as refused:
            await idp.client_credentials(["invoices:read", "invoices:delete"])
        assert refused.value.error == "invalid_scope"

    keys = await fetch_jwks(f"{realm.url}/jwks.json")
    token = jwt.decode(subset.tokens.access_token, keys, algorithms=["ES256"])
    assert token.header["typ"] == "at+jwt"
    claims = token.claims
    assert (claims["sub"], claims["aud"], claims["client_id"]) == (m2m.id, m2m.id, m2m.id)
    assert claims["dat"] == {"type": "client"} and claims["iss"] == realm.url
    assert "sid" not in claims
