"""A third-party RP (Authlib's httpx OAuth 2 client) and verifier (joserfc) against the provider:
discovery, JWKS, the code flow with PKCE S256 for each signing algorithm, both secret-based client
authentications, userinfo, introspection, revocation and resource indicators (RFC 8707)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authpi_admin.generated.models import IssuerClientsCreateResponse as Client
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.oidc.helpers import (
    ALGORITHMS,
    CALLBACK,
    DEFAULT_SCOPE,
    Browser,
    Realm,
    random_token,
    redirect_target,
    verify_access_token,
    verify_id_token,
)

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore:EdDSA is deprecated")]

EMAIL = "grace@example.com"
API = "https://api.example.com/"
FILES = "https://files.example.com/v1"


class RP:
    """An Authlib client of one AuthPI client, remembering every request it sent."""

    def __init__(self, oauth: AsyncOAuth2Client, sent: list[Any]) -> None:
        self.oauth = oauth
        self.sent = sent
        self.meta: dict[str, Any] = {}
        self.jwks: dict[str, Any] = {}
        self.keys = KeySet([])

    async def discover(self, issuer_url: str) -> None:
        response = await self.oauth.request(
            "GET", f"{issuer_url}/.well-known/openid-configuration", withhold_token=True
        )
        assert response.status_code == 200
        self.meta = response.json()
        jwks = await self.oauth.request("GET", self.meta["jwks_uri"], withhold_token=True)
        assert jwks.status_code == 200
        published = jwks.json()
        self.jwks = published
        self.keys = KeySet.import_key_set(published)

    async def sign_in(self, browser: Browser, **authorize: Any) -> tuple[dict[str, Any], str]:
        """Authorization request with PKCE and a nonce, sign-in, code exchange; returns (token, nonce)."""
        verifier, nonce = random_token(48), random_token()
        url, state = self.oauth.create_authorization_url(
            self.meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **authorize
        )
        assert "code_challenge_method=S256" in url and "code_challenge=" in url
        callback = redirect_target(await browser.visit(url, EMAIL))
        token = await self.oauth.fetch_token(
            self.meta["token_endpoint"], authorization_response=callback, state=state, code_verifier=verifier
        )
        return dict(token), nonce

    @property
    def last_request(self) -> Any:
        return self.sent[-1]


@asynccontextmanager
async def relying_party(realm: Realm, client: Client, auth_method: str) -> AsyncIterator[RP]:
    sent: list[Any] = []

    async def record(request: Any) -> None:
        sent.append(request)

    async with AsyncOAuth2Client(
        client_id=client.id,
        client_secret=client.secret,
        token_endpoint_auth_method=auth_method,
        revocation_endpoint_auth_method=auth_method,
        code_challenge_method="S256",
        scope=DEFAULT_SCOPE,
        redirect_uri=CALLBACK,
        timeout=30,
        event_hooks={"request": [record]},
    ) as oauth:
        rp = RP(oauth, sent)
        await rp.discover(realm.url)
        yield rp


def check_discovery(meta: dict[str, Any], issuer_url: str) -> None:
    assert meta["issuer"] == issuer_url
    for endpoint in ("authorization", "token", "userinfo", "revocation", "introspection", "end_session"):
        assert meta[f"{endpoint}_endpoint"].startswith(f"{issuer_url}/")
    assert meta["jwks_uri"] == f"{issuer_url}/jwks.json"
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert set(ALGORITHMS) <= set(meta["id_token_signing_alg_values_supported"])
    assert {"client_secret_basic", "client_secret_post"} <= set(meta["token_endpoint_auth_methods_supported"])
    assert meta["authorization_response_iss_parameter_supported"] is True


def check_jwks(jwks: dict[str, Any]) -> None:
    assert {key["alg"] for key in jwks["keys"]} >= set(ALGORITHMS)
    for key in jwks["keys"]:
        assert key["use"] == "sig" and key["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), "a private parameter is published"


@pytest.mark.parametrize("alg", ALGORITHMS)
async def test_code_flow_with_pkce_and_client_secret_basic(realm: Realm, browser: Browser, alg: str) -> None:
    client = await realm.client(response_signature_alg=alg)
    user = await realm.user(EMAIL, first_name="Grace", last_name="Hopper")
    async with relying_party(realm, client, "client_secret_basic") as rp:
        check_discovery(rp.meta, realm.url)
        check_jwks(rp.jwks)
        iss = rp.meta["issuer"]

        token, nonce = await rp.sign_in(browser)
        exchange = rp.last_request
        assert exchange.headers["authorization"].startswith("Basic ")
        assert b"client_secret" not in exchange.content and b"code_verifier=" in exchange.content
        assert token["token_type"] == "Bearer" and token["scope"] == DEFAULT_SCOPE

        id_claims = verify_id_token(
            token["id_token"],
            rp.keys,
            alg,
            iss=iss,
            client_id=client.id,
            nonce=nonce,
            access_token=token["access_token"],
        )
        assert "at_hash" in id_claims  # SHA-512 based for EdDSA, SHA-256 otherwise
        assert id_claims["sub"] == user.id and id_claims["email"] == EMAIL
        assert id_claims["name"] == "Grace Hopper"
        at_claims = verify_access_token(
            token["access_token"], rp.keys, alg, iss=iss, client_id=client.id, scope=DEFAULT_SCOPE
        )
        assert at_claims["sub"] == user.id and at_claims["sid"] == id_claims["sid"]

        refresh = jwt.decode(token["refresh_token"], rp.keys, algorithms=[alg])
        assert "typ" not in refresh.header and "auth_time" not in refresh.claims
        assert refresh.claims["iss"] == iss and refresh.claims["client_id"] == client.id

        refreshed = dict(await rp.oauth.refresh_token(rp.meta["token_endpoint"], token["refresh_token"]))
        assert refreshed["refresh_token"] != token["refresh_token"]
        again = verify_id_token(
            refreshed["id_token"],
            rp.keys,
            alg,
            iss=iss,
            client_id=client.id,
            nonce=None,
            access_token=refreshed["access_token"],
        )
        assert again["sub"] == user.id and again.get("nonce") in (None, nonce)
        fresh_at = verify_access_token(
            refreshed["access_token"], rp.keys, alg, iss=iss, client_id=client.id, scope=DEFAULT_SCOPE
        )
        assert fresh_at["jti"] != at_claims["jti"] and fresh_at["sid"] == at_claims["sid"]

        for method in ("GET", "POST"):  # the refreshed token, sent by Authlib as a Bearer header
            info = await rp.oauth.request(method, rp.meta["userinfo_endpoint"])
            assert info.status_code == 200, info.text
            assert "no-store" in info.headers["cache-control"]
            body = info.json()
            assert (body["sub"], body["email"], body["email_verified"]) == (user.id, EMAIL, False)
            assert body["given_name"] == "Grace" and body["organizations"] == []


async def test_code_flow_with_client_secret_post(realm: Realm, browser: Browser) -> None:
    client = await realm.client()
    await realm.user(EMAIL)
    async with relying_party(realm, client, "client_secret_post") as rp:
        token, nonce = await rp.sign_in(browser)
        exchange = rp.last_request
        assert "authorization" not in exchange.headers
        assert b"client_secret=" in exchange.content and f"client_id={client.id}".encode() in exchange.content
        verify_id_token(
            token["id_token"],
            rp.keys,
            "ES256",
            iss=realm.url,
            client_id=client.id,
            nonce=nonce,
            access_token=token["access_token"],
        )
        refreshed = await rp.oauth.refresh_token(rp.meta["token_endpoint"], token["refresh_token"])
        assert b"client_secret=" in rp.last_request.content
        assert refreshed["access_token"] != token["access_token"]


async def test_introspection_and_revocation(realm: Realm, browser: Browser) -> None:
    own, other = await realm.client(), await realm.client()
    user = await realm.user(EMAIL)
    async with relying_party(realm, own, "client_secret_basic") as rp:
        token, _ = await rp.sign_in(browser)
        endpoint = rp.meta["introspection_endpoint"]

        described = await rp.oauth.introspect_token(endpoint, token=token["access_token"])
        assert described.status_code == 200 and "no-store" in described.headers["cache-control"]
        body = described.json()
        assert body["active"] is True and body["token_type"] == "access_token"
        assert (body["sub"], body["client_id"], body["scope"]) == (user.id, own.id, DEFAULT_SCOPE)
        assert body["iss"] == realm.url and body["aud"] == own.id and isinstance(body["exp"], int)

        as_refresh = (await rp.oauth.introspect_token(endpoint, token=token["refresh_token"])).json()
        assert as_refresh["active"] is True and as_refresh["token_type"] == "refresh_token"

        async with relying_party(realm, other, "client_secret_basic") as stranger:
            for value in (token["access_token"], token["refresh_token"]):
                foreign = await stranger.oauth.introspect_token(endpoint, token=value)
                assert foreign.status_code == 200 and foreign.json() == {"active": False}
            # Revoking someone else's token is a silent no-op (RFC 7009 §2.2).
            ignored = await stranger.oauth.revoke_token(rp.meta["revocation_endpoint"], token["access_token"])
            assert ignored.status_code == 200
        assert (await rp.oauth.introspect_token(endpoint, token=token["access_token"])).json()["active"]

        revoked = await rp.oauth.revoke_token(
            rp.meta["revocation_endpoint"], token["access_token"], token_type_hint="access_token"
        )
        assert revoked.status_code == 200
        assert (await rp.oauth.introspect_token(endpoint, token=token["access_token"])).json() == {
            "active": False
        }
        info = await rp.oauth.get(rp.meta["userinfo_endpoint"])
        assert info.status_code == 401 and "invalid_token" in info.headers["www-authenticate"]
        # The refresh token is a separate grant and still works.
        refreshed = await rp.oauth.refresh_token(rp.meta["token_endpoint"], token["refresh_token"])
        assert (await rp.oauth.introspect_token(endpoint, token=refreshed["access_token"])).json()["active"]


async def test_resource_indicators_set_the_audience(realm: Realm, browser: Browser) -> None:
    client = await realm.client(allowed_resources=[API, FILES])
    await realm.user(EMAIL)
    async with relying_party(realm, client, "client_secret_basic") as rp:

        def check_audience(token: dict[str, Any], aud: str | list[str]) -> None:
            verify_access_token(
                token["access_token"],
                rp.keys,
                "ES256",
                iss=realm.url,
                client_id=client.id,
                scope=DEFAULT_SCOPE,
                aud=aud,
            )

        single, nonce = await rp.sign_in(browser, resource=API)
        check_audience(single, API)
        verify_id_token(  # the ID token stays addressed to the client
            single["id_token"],
            rp.keys,
            "ES256",
            iss=realm.url,
            client_id=client.id,
            nonce=nonce,
            access_token=single["access_token"],
        )

        both, _ = await rp.sign_in(browser, resource=[API, FILES])
        check_audience(both, [API, FILES])

        with pytest.raises(OAuthError) as refused:
            await rp.oauth.refresh_token(
                rp.meta["token_endpoint"], both["refresh_token"], resource="https://elsewhere.example.com/"
            )
        assert refused.value.error == "invalid_target"
        narrowed = dict(
            await rp.oauth.refresh_token(rp.meta["token_endpoint"], both["refresh_token"], resource=FILES)
        )
        check_audience(narrowed, FILES)
        # Narrowing one access token does not shrink the grant: the other resource is still there.
        other = dict(
            await rp.oauth.refresh_token(rp.meta["token_endpoint"], narrowed["refresh_token"], resource=API)
        )
        check_audience(other, API)
        kept = dict(await rp.oauth.refresh_token(rp.meta["token_endpoint"], other["refresh_token"]))
        check_audience(kept, [API, FILES])  # without resource: the authorized set again
