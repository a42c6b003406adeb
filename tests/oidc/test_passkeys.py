"""Passkeys (WebAuthn) over real HTTP with a software authenticator built by the test: sign-up with
a passkey, passwordless sign-in (entry, after the identifier), and every refusal the relying party
owes: wrong origin, wrong RP ID, sign-counter regression, missing user verification when required,
a challenge replayed or presented by another browser, a passkey of someone else."""

from __future__ import annotations

import base64
import html
import json
import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.db_query import count, rows
from tests.harness import RunningServer
from tests.oidc.helpers import (
    AuthRequest,
    Browser,
    Realm,
    callback_params,
    describe,
    error_text,
    form,
    heading,
    is_page,
    unverified_claims,
)
from tests.oidc.soft_passkey import SoftPasskey

pytestmark = pytest.mark.anyio

EMAIL = "ada@example.com"
NOT_VERIFIED = "That passkey could not be verified. Try again, or use another way to sign in."
UNKNOWN = "This passkey is not registered for this application. Use another way to sign in."
EXPIRED = "This passkey request expired or was already used. Start again."


def urlsafe(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def options_of(page: httpx.Response) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="passkey-options">(.*?)</script>', page.text, re.S)
    assert match, describe(page)
    options: dict[str, Any] = json.loads(match.group(1))
    return options


def link(page: httpx.Response, pattern: str) -> str:
    match = re.search(rf'href="([^"]*{pattern}[^"]*)"', page.text)
    assert match, describe(page)
    return urljoin(str(page.url), html.unescape(match.group(1)))


async def session_amr(server: RunningServer, user_id: str) -> list[str]:
    """The ``amr`` the user's browser session records (one sign-in so far)."""
    found = await rows(
        server, "SELECT authentication FROM sessions WHERE user_id = ? AND type = 'op'", user_id
    )
    assert len(found) == 1, found
    authentication = found[0][0]
    amr: list[str] = (json.loads(authentication) if isinstance(authentication, str) else authentication)[
        "amr"
    ]
    return amr


async def enable_passkeys(realm: Realm, *, first_factor_only: bool = True, **settings: Any) -> str:
    method = await realm.api.auth_methods.create(
        {
            "name": "Passkey",
            "method": "passkey",
            "first_factor_only": first_factor_only,
            "settings": settings,
            "enabled_signup": True,
        }
    )
    return str(method.id)


async def sign_up(
    browser: Browser, realm: Realm, auth: AuthRequest, key: SoftPasskey, email: str
) -> httpx.Response:
    """Sign up with a passkey; returns the page after the registration ceremony."""
    login = await browser.get(auth.url)
    signup = await browser.get(link(login, "passkey/signup"))
    assert is_page(signup, "signup"), describe(signup)
    create = await browser.submit(signup, {"email": email, "name": "Ada"})
    assert create.status_code == 200 and form(create, "/passkey/register"), describe(create)
    return await browser.submit(create, {"credential": key.create(options_of(create), realm.server_url)})


async def ceremony(browser: Browser, auth: AuthRequest) -> httpx.Response:
    """The "Sign in with a passkey" entry of the identifier page: its ceremony page."""
    login = await browser.get(auth.url)
    page = await browser.submit(login, {}, action_suffix="/passkey/login")
    assert page.status_code == 200 and heading(page) == "Sign in with a passkey", describe(page)
    return page


_SERVERS: dict[str, RunningServer] = {}


def server_of(realm: Realm) -> RunningServer:
    return _SERVERS[realm.server_url]


@pytest.fixture(autouse=True)
def _remember_server(server: RunningServer) -> None:
    _SERVERS[server.url] = server


async def registered(realm: Realm, key: SoftPasskey, email: str = EMAIL) -> str:
    """A user signed up with ``key`` (and signed in once); their id."""
    client = await realm.client()
    auth = realm.request(client.id)
    async with Browser(realm.server_url) as browser:
        page = await sign_up(browser, realm, auth, key, email)
        done = await browser.submit(page, {"credential": key.get(options_of(page), realm.server_url)})
        assert "code" in callback_params(done)
    [(user_id,)] = await rows(
        server_of(realm), "SELECT id FROM users WHERE issuer_id = ? AND username_key = ?", realm.id, email
    )
    return str(user_id)


async def test_sign_up_with_a_passkey_then_sign_in_without_a_password(
    realm: Realm, server: RunningServer
) -> None:
    await enable_passkeys(realm)
    client = await realm.client()
    auth = realm.request(client.id)
    key = SoftPasskey(synced=True)
    async with Browser(server.url) as browser:
        login = await browser.get(auth.url)
        # The entry, the field's autofill (conditional UI) and the script that drives both.
        assert "Sign in with a passkey" in login.text
        assert 'autocomplete="username webauthn"' in login.text
        script = re.search(r'<script src="([^"]+)" data-entry="[^"]+" defer>', login.text)
        assert script and script.group(1) == f"/{realm.id}/static/passkey.js"
        served = await browser.http.get(urljoin(server.url, script.group(1)))
        assert served.status_code == 200 and served.headers["content-type"].startswith("text/javascript")
        assert "navigator.credentials.get" in served.text

        signup = await browser.get(link(login, "passkey/signup"))
        create = await browser.submit(signup, {"email": EMAIL, "name": "Ada"})
        options = options_of(create)
        host = urlsplit(server.url).hostname
        assert options["rp"]["id"] == host and options["user"]["name"] == EMAIL
        assert options["authenticatorSelection"]["userVerification"] == "preferred"
        page = await browser.submit(create, {"credential": key.create(options, server.url)})
        # One answer whether or not the address was free: use the new passkey to sign in.
        assert "Use your new passkey once more to sign in" in page.text, describe(page)
        assert options_of(page)["allowCredentials"] == []  # discoverable
        done = await browser.submit(page, {"credential": key.get(options_of(page), server.url)})
        code = callback_params(done)["code"]
    tokens = await realm.exchange(client, code, auth)
    assert tokens.status_code == 200, describe(tokens)

    [(user_id, credential_id, sign_count, backup_eligible, backed_up, aaguid)] = await rows(
        server,
        "SELECT user_id, credential_id, sign_count, backup_eligible, backed_up, aaguid FROM verifiers "
        "WHERE issuer_id = ? AND type = 'passkey'",
        realm.id,
    )
    assert credential_id == key.id and sign_count == 1 and backup_eligible and backed_up
    assert aaguid == "00000000-0000-0000-0000-000000000000"
    user = await realm.api.users.get(user_id)
    assert user.username == EMAIL and user.profile["name"] == "Ada"
    created = await rows(server, "SELECT type FROM events WHERE user_id = ? ORDER BY id", user_id)
    assert ("user.created",) in created and ("user.verifier.created",) in created
    amr = await session_amr(server, user_id)
    assert amr == ["swk", "user"]  # synced credential, user verified

    # Another browser, another day: the entry button, then the passkey alone.
    auth = realm.request(client.id)
    async with Browser(server.url) as browser:
        page = await ceremony(browser, auth)
        done = await browser.submit(page, {"credential": key.get(options_of(page), server.url)})
        assert "code" in callback_params(done)
    assert await count(server, "verifiers", "credential_id = ? AND sign_count = 2", key.id) == 1


async def test_the_conditional_ui_options_and_the_identifier_path(
    realm: Realm, server: RunningServer
) -> None:
    await enable_passkeys(realm)
    key = SoftPasskey()
    await registered(realm, key)
    other = SoftPasskey()
    await registered(realm, other, "grace@example.com")
    client = await realm.client()

    # The identifier page's autofill asks for options as JSON (with the page's CSRF token).
    auth = realm.request(client.id)
    async with Browser(server.url) as browser:
        login = await browser.get(auth.url)
        entry = form(login, "/passkey/login")
        answer = await browser.http.post(f"{server.url}/{realm.id}/passkey/login/options", data=entry.hidden)
        assert answer.status_code == 200, describe(answer)
        body = answer.json()
        assert body["action"] == f"/{realm.id}/passkey/verify" and body["options"]["allowCredentials"] == []
        credential = key.get(body["options"], server.url)
        fields = {**entry.hidden, "ceremony": body["ceremony"], "credential": credential}
        done = await browser.http.post(f"{server.url}{body['action']}", data=fields)
        assert "code" in callback_params(done)
        forged = await browser.http.post(
            f"{server.url}/{realm.id}/passkey/login/options", data={**entry.hidden, "csrf": "x" * 64}
        )
        assert forged.status_code == 403

    # Identifier first: password and passkey are offered; the passkey must be that account's.
    auth = realm.request(client.id)
    async with Browser(server.url) as browser:
        login = await browser.get(auth.url)
        choose = await browser.submit(login, {"username": EMAIL}, action_suffix=f"/{realm.id}/login")
        assert "Passkey" in choose.text and "Password" in choose.text, describe(choose)
        method_id = re.findall(r'name="method" value="([^"]+)"', choose.text)
        page = None
        for candidate in method_id:
            page = await browser.submit(choose, {"method": candidate}, action_suffix="/login/choose")
            if 'id="passkey-options"' in page.text:
                break
            choose = await browser.get(auth.url)
            choose = await browser.submit(choose, {"username": EMAIL}, action_suffix=f"/{realm.id}/login")
        assert page is not None and options_of(page)["allowCredentials"] == []  # reveals nothing
        refused = await browser.submit(page, {"credential": other.get(options_of(page), server.url)})
        assert refused.status_code == 400 and error_text(refused) == NOT_VERIFIED
        done = await browser.submit(refused, {"credential": key.get(options_of(refused), server.url)})
        assert "code" in callback_params(done)


async def test_wrong_origin_and_wrong_rp_id_are_refused(realm: Realm, server: RunningServer) -> None:
    await enable_passkeys(realm)
    key = SoftPasskey()
    await registered(realm, key)
    client = await realm.client()
    port = urlsplit(server.url).port
    async with Browser(server.url) as browser:
        page = await ceremony(browser, realm.request(client.id))
        for origin, rp_id in (
            ("http://evil.example", None),
            (f"http://127.0.0.1:{port + 1}", None),
            (f"https://127.0.0.1:{port}", None),
            (server.url, "evil.example"),
            (server.url, "localhost"),
        ):
            page = await browser.submit(page, {"credential": key.get(options_of(page), origin, rp_id=rp_id)})
            assert page.status_code == 400 and error_text(page) == NOT_VERIFIED, (origin, rp_id)
        done = await browser.submit(page, {"credential": key.get(options_of(page), server.url)})
        assert "code" in callback_params(done)
    # Refusals left the counter alone; the one success moved it.
    assert (
        await count(server, "verifiers", "credential_id = ? AND sign_count = ?", key.id, key.sign_count) == 1
    )


async def test_a_sign_counter_that_does_not_move_forward_is_refused(
    realm: Realm, server: RunningServer
) -> None:
    await enable_passkeys(realm)
    key = SoftPasskey()
    await registered(realm, key)  # the counter is at 1
    client = await realm.client()
    async with Browser(server.url) as browser:
        page = await ceremony(browser, realm.request(client.id))
        for claimed in (1, 0):  # a cloned authenticator replays an old count
            page = await browser.submit(
                page, {"credential": key.get(options_of(page), server.url, sign_count=claimed)}
            )
            assert page.status_code == 400 and error_text(page) == NOT_VERIFIED
        done = await browser.submit(page, {"credential": key.get(options_of(page), server.url, sign_count=7)})
        assert "code" in callback_params(done)
    assert await count(server, "verifiers", "credential_id = ? AND sign_count = 7", key.id) == 1


async def test_an_authenticator_without_a_counter_keeps_working(realm: Realm, server: RunningServer) -> None:
    """Counters that stay at 0 (many synced passkeys) are no regression: both are 0."""
    await enable_passkeys(realm)
    key = SoftPasskey(synced=True)
    client = await realm.client()
    auth = realm.request(client.id)
    async with Browser(server.url) as browser:
        page = await sign_up(browser, realm, auth, key, EMAIL)
        done = await browser.submit(page, {"credential": key.get(options_of(page), server.url, sign_count=0)})
        assert "code" in callback_params(done)
    async with Browser(server.url) as browser:
        page = await ceremony(browser, realm.request(client.id))
        done = await browser.submit(page, {"credential": key.get(options_of(page), server.url, sign_count=0)})
        assert "code" in callback_params(done)


async def test_user_verification_when_the_method_requires_it(realm: Realm, server: RunningServer) -> None:
    await enable_passkeys(realm, user_verification="required")
    client = await realm.client()
    auth = realm.request(client.id)
    lazy = SoftPasskey(user_verified=False)
    async with Browser(server.url) as browser:
        page = await sign_up(browser, realm, auth, lazy, EMAIL)
        assert page.status_code == 400 and error_text(page) == "The passkey could not be created. Try again."
        assert options_of(page)["authenticatorSelection"]["userVerification"] == "required"
    assert await count(server, "verifiers", "issuer_id = ?", realm.id) == 0
    assert await count(server, "users", "issuer_id = ?", realm.id) == 0

    key = SoftPasskey()
    await registered(realm, key)
    key.user_verified = False
    async with Browser(server.url) as browser:
        page = await ceremony(browser, realm.request(client.id))
        assert options_of(page)["userVerification"] == "required"
        page = await browser.submit(page, {"credential": key.get(options_of(page), server.url)})
        assert page.status_code == 400 and error_text(page) == NOT_VERIFIED
        key.user_verified = True
        done = await browser.submit(page, {"credential": key.get(options_of(page), server.url)})
        assert "code" in callback_params(done)


async def test_without_user_verification_a_preferred_method_signs_in_with_presence_only(
    realm: Realm, server: RunningServer
) -> None:
    await enable_passkeys(realm)
    key = SoftPasskey(user_verified=False)
    user_id = await registered(realm, key)
    amr = await session_amr(server, user_id)
    assert amr == ["hwk"]


async def test_a_challenge_serves_once_and_only_its_browser(realm: Realm, server: RunningServer) -> None:
    await enable_passkeys(realm)
    key = SoftPasskey()
    await registered(realm, key)
    client = await realm.client()
    auth = realm.request(client.id)
    async with Browser(server.url) as browser, Browser(server.url) as thief:
        page = await ceremony(browser, auth)
        good = key.get(options_of(page), server.url)
        # Another browser on the same pending request, with its own CSRF token, cannot use it.
        login = await thief.get(auth.url)
        stolen = {
            **form(page, "/passkey/verify").hidden,
            "csrf": form(login, f"/{realm.id}/login").hidden["csrf"],
        }
        answer = await thief.http.post(
            f"{server.url}/{realm.id}/passkey/verify", data={**stolen, "credential": good}
        )
        assert answer.status_code == 400 and EXPIRED in answer.text, describe(answer)
        # A failed attempt spends the challenge: the valid answer to it is refused afterwards.
        tampered = json.loads(good)
        tampered["response"]["signature"] = tampered["response"]["signature"][:-4] + "AAAA"
        retry = await browser.submit(page, {"credential": json.dumps(tampered)})
        assert retry.status_code == 400 and error_text(retry) == NOT_VERIFIED
        replay = await browser.submit(page, {"credential": good})
        assert replay.status_code == 400 and EXPIRED in replay.text
        # The answer to an old challenge does not fit a new one.
        stale = await browser.submit(retry, {"credential": good})
        assert stale.status_code == 400 and error_text(stale) == NOT_VERIFIED
        fresh = key.get(options_of(stale), server.url)
        done = await browser.submit(stale, {"credential": fresh})
        assert "code" in callback_params(done)
        # The successful answer cannot be presented again either.
        again = await browser.submit(stale, {"credential": fresh})
        assert again.status_code == 400 and heading(again) == "Sign-in expired"


async def test_sign_up_with_a_taken_address_keeps_nothing(realm: Realm, server: RunningServer) -> None:
    await enable_passkeys(realm)
    existing = await realm.user(EMAIL)
    client = await realm.client()
    key = SoftPasskey()
    async with Browser(server.url) as browser:
        page = await sign_up(browser, realm, realm.request(client.id), key, EMAIL)
        assert "Use your new passkey once more to sign in" in page.text  # the same answer as a new address
        refused = await browser.submit(page, {"credential": key.get(options_of(page), server.url)})
        assert refused.status_code == 400 and error_text(refused) == UNKNOWN
    assert await count(server, "verifiers", "user_id = ?", existing.id) == 0
    assert await count(server, "users", "issuer_id = ?", realm.id) == 1


async def test_malformed_and_oversized_answers_are_refused_cleanly(
    realm: Realm, server: RunningServer
) -> None:
    await enable_passkeys(realm)
    client = await realm.client()
    async with Browser(server.url) as browser:
        page = await ceremony(browser, realm.request(client.id))
        for credential in ("", "not json", "[]", '{"id": "x"}', "x" * 20_000):
            page = await browser.submit(page, {"credential": credential})
            assert page.status_code == 400 and error_text(page) == NOT_VERIFIED, credential[:20]
        create_fields = {"email": "x@example.com"}
        signup = await browser.get(link(await browser.get(realm.request(client.id).url), "passkey/signup"))
        create = await browser.submit(signup, create_fields)
        refused = await browser.submit(create, {"credential": '{"id": 1}'})
        assert (
            refused.status_code == 400
            and error_text(refused) == "The passkey could not be created. Try again."
        )
    assert server.tracebacks() == []


async def test_a_second_factor_method_is_not_offered_before_the_first(
    realm: Realm, server: RunningServer
) -> None:
    await enable_passkeys(realm, first_factor_only=False)
    client = await realm.client()
    async with Browser(server.url) as browser:
        login = await browser.get(realm.request(client.id).url)
        assert "Sign in with a passkey" not in login.text and "webauthn" not in login.text
        assert "passkey/signup" not in login.text
        entry = form(login, f"/{realm.id}/login").hidden
        refused = await browser.http.post(f"{server.url}/{realm.id}/passkey/login", data=entry)
        assert refused.status_code == 400 and "not enabled" in refused.text


# --- a second factor ---------------------------------------------------------------------------------


async def id_token_amr(realm: Realm, client: Any, done: httpx.Response, auth: AuthRequest) -> list[str]:
    tokens = await realm.exchange(client, callback_params(done)["code"], auth)
    assert tokens.status_code == 200, describe(tokens)
    amr: list[str] = unverified_claims(tokens.json()["id_token"])["amr"]
    return amr


async def test_required_mfa_enrolls_a_passkey_then_asks_for_it_after_the_password(
    realm: Realm, server: RunningServer
) -> None:
    await enable_passkeys(realm, first_factor_only=False)
    await realm.api.update({"settings": {"security": {"mfa": {"required": True}}}})
    user = await realm.user(EMAIL)
    client = await realm.client()
    key = SoftPasskey()

    auth = realm.request(client.id)
    async with Browser(server.url) as browser:
        page = await browser.sign_in(auth.url, EMAIL)
        assert page.url.path.endswith("/mfa/enroll") and heading(page) == "Add a passkey", describe(page)
        options = options_of(page)
        assert options["user"]["id"] == urlsafe(user.id) and options["excludeCredentials"] == []
        codes = await browser.submit(page, {"credential": key.create(options, server.url)})
        assert heading(codes) == "Save your backup codes", describe(codes)
        assert len(re.findall(r"<li><code>([a-z0-9-]+)</code></li>", codes.text)) == 10
        done = await browser.submit(codes, {}, action_suffix="/mfa/continue")
        assert await id_token_amr(realm, client, done, auth) == ["pwd", "hwk", "user", "mfa"]
    created = await rows(server, "SELECT type FROM events WHERE user_id = ? ORDER BY id", user.id)
    assert ("user.mfa.factor-created",) in created

    # Next time: password, then the passkey (the user's own credentials are asked for).
    auth = realm.request(client.id)
    async with Browser(server.url) as browser:
        page = await browser.sign_in(auth.url, EMAIL)
        assert page.url.path.endswith("/mfa") and heading(page) == "Confirm it's you", describe(page)
        assert [c["id"] for c in options_of(page)["allowCredentials"]] == [key.id]
        stranger = SoftPasskey()
        stranger.credential_id = key.credential_id  # the same id, another key: the signature fails
        stranger.user_handle = user.id.encode()
        page = await browser.submit(page, {"credential": stranger.get(options_of(page), server.url)})
        assert page.status_code == 400 and error_text(page) == NOT_VERIFIED
        done = await browser.submit(page, {"credential": key.get(options_of(page), server.url)})
        assert await id_token_amr(realm, client, done, auth) == ["pwd", "hwk", "user", "mfa"]
    kinds = await rows(
        server, "SELECT type FROM events WHERE user_id = ? AND type LIKE 'user.mfa.verification.%'", user.id
    )
    assert sorted(kinds) == [("user.mfa.verification.failed",), ("user.mfa.verification.succeeded",)]
    listed = (await realm.api.user(user.id).verifiers.list()).data
    assert sorted(v.model_extra["type"] for v in listed) == ["backup_codes", "passkey", "password"]


async def test_a_second_factor_passkey_is_only_the_signed_in_users_own(
    realm: Realm, server: RunningServer
) -> None:
    await enable_passkeys(realm, first_factor_only=False)
    await realm.api.update({"settings": {"security": {"mfa": {"required": True}}}})
    await realm.user(EMAIL)
    await realm.user("grace@example.com")
    client = await realm.client()
    keys = {EMAIL: SoftPasskey(), "grace@example.com": SoftPasskey()}
    for email, key in keys.items():
        async with Browser(server.url) as browser:
            page = await browser.sign_in(realm.request(client.id).url, email)
            codes = await browser.submit(page, {"credential": key.create(options_of(page), server.url)})
            assert heading(codes) == "Save your backup codes", describe(codes)
    async with Browser(server.url) as browser:
        page = await browser.sign_in(realm.request(client.id).url, EMAIL)
        grace = keys["grace@example.com"]
        forged = {**options_of(page), "allowCredentials": []}
        refused = await browser.submit(page, {"credential": grace.get(forged, server.url)})
        assert refused.status_code == 400 and error_text(refused) == NOT_VERIFIED
        # With no pending first factor the second-factor ceremony is not available.
    async with Browser(server.url) as browser:
        login = await browser.get(realm.request(client.id).url)
        entry = form(login, f"/{realm.id}/login").hidden
        answer = await browser.http.post(f"{server.url}/{realm.id}/passkey/second-factor", data=entry)
        assert answer.status_code == 400 and heading(answer) == "Sign-in expired"
