"""The account portal (decision 21) over real HTTP, on both backends: signing in to it through the
hosted pages, the profile, the password change, ending another sign-in (its refresh token then
fails at /token), withdrawing a consent, authenticator apps, backup codes, passkeys and trusted
devices, the recent sign-in asked before sensitive changes, and CSRF refused on every form."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pyotp
import pytest

from authpi.clock import now_s
from tests.db_query import rows
from tests.harness import RunningServer
from tests.oidc.helpers import (
    PASSWORD,
    Browser,
    Realm,
    callback_params,
    describe,
    error_of,
    error_text,
    form,
    heading,
    is_page,
)
from tests.oidc.soft_passkey import SoftPasskey
from tests.oidc.test_passkeys import enable_passkeys, options_of

pytestmark = pytest.mark.anyio

EMAIL = "portal@example.com"
NEW_PASSWORD = "a fresh portal passphrase"
ACCOUNT = "Your account"


async def open_portal(
    browser: Browser, realm: Realm, email: str = EMAIL, password: str = PASSWORD
) -> httpx.Response:
    """Open the portal: sign in through the hosted pages if the browser is not signed in yet."""
    page = await browser.get(f"{realm.url}/account")
    if is_page(page, "login"):
        page = await browser.submit(page, {"username": email})
        page = await browser.submit(page, {"password": password})
    assert page.status_code == 200 and heading(page) == ACCOUNT, describe(page)
    return page


def section_form(page: httpx.Response, action: str, field: str, value: str) -> dict[str, str]:
    """The hidden fields of the form posting to ``action`` whose ``field`` is ``value``."""
    pattern = (
        rf'<form method="post" action="[^"]*{re.escape(action)}">\s*'
        rf'<input type="hidden" name="csrf" value="([^"]+)">\s*'
        rf'<input type="hidden" name="{field}" value="{re.escape(value)}">'
    )
    match = re.search(pattern, page.text)
    assert match, f"no {action} form for {value} on {page.url}"
    return {"csrf": match.group(1), field: value}


async def post(browser: Browser, page: httpx.Response, action: str, fields: dict[str, str]) -> httpx.Response:
    response = await browser.http.post(f"{str(page.url).split('/account')[0]}/account{action}", data=fields)
    if response.is_redirect:
        return await browser.get(str(response.url.join(response.headers["location"])))
    return response


async def factor_types(realm: Realm, user_id: str) -> list[str]:
    """The user's verifiers other than the password, by type."""
    found = [(v.model_extra or {}).get("type") for v in (await realm.api.user(user_id).verifiers.list()).data]
    return sorted(str(t) for t in found if t != "password")


async def test_the_portal_speaks_the_browser_language(realm: Realm, browser: Browser) -> None:
    """No authorization request carries ui_locales here: Accept-Language, then the issuer default."""
    await realm.user("portal-de@example.com", name="Grete", email_verified=True)
    browser.http.headers["Accept-Language"] = "de-DE, en;q=0.5"
    page = await browser.get(f"{realm.url}/account")
    assert is_page(page, "login") and 'lang="de"' in page.text, describe(page)
    page = await browser.submit(page, {"username": "portal-de@example.com"})
    page = await browser.submit(page, {"password": PASSWORD})
    assert heading(page) == "Ihr Konto" and page.headers["content-language"] == "de", describe(page)
    assert "Vollständiger Name" in page.text and "Wo Sie angemeldet sind" in page.text
    assert "Your account" not in page.text and "Save profile" not in page.text
    saved = await browser.submit(page, {"name": "Grete M."}, action_suffix="/account/profile")
    assert "Ihr Profil ist gespeichert." in saved.text, describe(saved)
    too_long = await browser.submit(saved, {"name": "x" * 201}, action_suffix="/account/profile")
    assert (
        too_long.status_code == 400 and error_text(too_long) == "Vollständiger Name: höchstens 200 Zeichen."
    )

    await realm.api.update({"settings": {"portals": {"default_locale": "es"}}})
    browser.http.headers["Accept-Language"] = "ja"  # no catalogue: the issuer's Spanish
    page = await browser.get(f"{realm.url}/account")
    assert heading(page) == "Tu cuenta" and page.headers["content-language"] == "es", describe(page)
    await realm.api.update({"settings": {"portals": {"default_locale": None}}})


async def test_signing_in_to_the_portal_and_editing_the_profile(realm: Realm, browser: Browser) -> None:
    user = await realm.user(EMAIL, name="Old Name", email_verified=True)
    branding = {"name": "Acme Accounts", "primary_color": "#aa0011"}
    await realm.admin.issuers.update(realm.id, {"settings": {"branding": branding}})
    page = await open_portal(browser, realm)
    assert EMAIL in page.text and "Old Name" in page.text
    assert "Your account · Acme Accounts" in page.text and "--accent: #aa0011" in page.text
    saved = await browser.submit(
        page, {"name": "Ada Lovelace", "given_name": "Ada", "nickname": ""}, action_suffix="/account/profile"
    )
    assert heading(saved) == ACCOUNT and "Your profile is saved." in saved.text, describe(saved)
    stored = await realm.api.users.get(user.id)
    assert stored.profile["name"] == "Ada Lovelace" and stored.profile["given_name"] == "Ada"
    assert stored.profile["email_verified"] is True  # the claims the user does not edit stay
    too_long = await browser.submit(page, {"name": "x" * 201}, action_suffix="/account/profile")
    assert too_long.status_code == 400 and error_text(too_long), describe(too_long)
    updated = [e async for e in realm.admin.events.list_all(limit=100, event_types="user.updated")]
    assert any(e.subject and e.subject["id"] == user.id for e in updated)


async def test_csrf_is_refused_on_every_form(realm: Realm, browser: Browser) -> None:
    user = await realm.user(EMAIL)
    page = await open_portal(browser, realm)
    for action in (
        "/profile",
        "/password",
        "/sessions/revoke",
        "/consents/revoke",
        "/totp",
        "/devices/revoke",
    ):
        for fields in ({"name": "Mallory"}, {"name": "Mallory", "csrf": "0" * 64}):
            refused = await browser.http.post(f"{realm.url}/account{action}", data=fields)
            assert refused.status_code == 403, (action, describe(refused))
    # A page of another site cannot read the token, and a browser without the cookie has none.
    async with Browser(realm.server_url) as stranger:
        token = form(page, "/account/profile").hidden["csrf"]
        refused = await stranger.http.post(f"{realm.url}/account/profile", data={"csrf": token, "name": "M"})
        assert refused.status_code == 403, describe(refused)
    assert "name" not in (await realm.api.users.get(user.id)).profile


async def test_changing_the_password_ends_the_other_sign_ins(realm: Realm, browser: Browser) -> None:
    await realm.user(EMAIL)
    client = await realm.client()
    other = await realm.tokens(client, EMAIL)
    page = await open_portal(browser, realm)
    action = "/account/password"
    for fields, problem in (
        ({"current": "wrong password", "new": NEW_PASSWORD, "confirm": NEW_PASSWORD}, "not right"),
        ({"current": PASSWORD, "new": "short", "confirm": "short"}, "at least 8"),
        ({"current": PASSWORD, "new": NEW_PASSWORD, "confirm": "different!"}, "do not match"),
    ):
        refused = await browser.submit(page, fields, action_suffix=action)
        assert refused.status_code == 400 and problem in (error_text(refused) or ""), describe(refused)
    changed = await browser.submit(
        page, {"current": PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD}, action_suffix=action
    )
    assert "Your password is changed" in changed.text, describe(changed)
    # The other sign-in's refresh token is dead; this browser stays signed in.
    assert error_of(await realm.refresh(client, other["refresh_token"])) == "invalid_grant"
    assert heading(await browser.get(f"{realm.url}/account")) == ACCOUNT
    async with Browser(realm.server_url) as fresh:
        old = await fresh.sign_in(realm.request(client.id).url, EMAIL, PASSWORD)
        assert old.status_code == 400, describe(old)
    async with Browser(realm.server_url) as fresh:
        assert "code" in callback_params(
            await fresh.sign_in(realm.request(client.id).url, EMAIL, NEW_PASSWORD)
        )


async def test_ending_another_sign_in_kills_its_refresh_token(realm: Realm, browser: Browser) -> None:
    user = await realm.user(EMAIL)
    stranger = await realm.user("stranger@example.com")
    client = await realm.client()
    other = await realm.tokens(client, EMAIL)
    theirs = await realm.tokens(client, "stranger@example.com")
    page = await open_portal(browser, realm)
    ops = [s for s in await realm.sessions(user.id) if s.type == "op" and s.status == "active"]
    assert len(ops) == 2
    listed = re.findall(r'data-session="(s_[^"]+)"', page.text)
    assert sorted(listed) == sorted(s.id for s in ops)
    current = next(s for s in ops if "this browser" in page.text.split(f'data-session="{s.id}"', 1)[1][:600])
    target = next(s.id for s in ops if s.id != current.id)

    # Someone else's session is not found, and stays alive.
    [their_op] = [s.id for s in await realm.sessions(stranger.id) if s.type == "op"]
    fields = section_form(page, "/account/sessions/revoke", "session", target)
    missing = await post(browser, page, "/sessions/revoke", {**fields, "session": their_op})
    assert missing.status_code == 404, describe(missing)
    assert (await realm.refresh(client, theirs["refresh_token"])).status_code == 200

    ended = await post(browser, page, "/sessions/revoke", fields)
    assert "That sign-in has ended." in ended.text, describe(ended)
    assert error_of(await realm.refresh(client, other["refresh_token"])) == "invalid_grant"
    assert heading(await browser.get(f"{realm.url}/account")) == ACCOUNT  # this one lives on
    terminated = [e async for e in realm.admin.events.list_all(limit=100, event_types="session.terminated")]
    assert any(
        e.subject and e.subject["id"] == target and e.data["reason"] == "user_revoked" for e in terminated
    )


async def test_withdrawing_a_consent(realm: Realm, browser: Browser) -> None:
    await realm.user(EMAIL)
    client = await realm.client(require_consent=True)
    auth = realm.request(client.id)
    consent = await browser.sign_in(auth.url, EMAIL)
    assert "consent" in str(consent.url), describe(consent)
    code = callback_params(await browser.submit(consent, {"decision": "allow"}))["code"]
    tokens = (await realm.exchange(client, code, auth)).json()
    page = await open_portal(browser, realm)
    [consent_id] = re.findall(r'data-consent="([^"]+)"', page.text)
    assert client.name in page.text
    done = await post(
        browser,
        page,
        "/consents/revoke",
        section_form(page, "/account/consents/revoke", "consent", consent_id),
    )
    assert "no longer has your consent" in done.text, describe(done)
    assert 'data-consent="' not in done.text
    assert error_of(await realm.refresh(client, tokens["refresh_token"])) == "invalid_grant"
    again = await browser.get(realm.request(client.id).url)
    assert "consent" in str(again.url), describe(again)
    revoked = [e async for e in realm.admin.events.list_all(limit=100, event_types="user.consent.revoked")]
    assert any(e.data and e.data["client_id"] == client.id for e in revoked)


async def test_authenticator_app_and_backup_codes(realm: Realm, browser: Browser) -> None:
    await realm.api.auth_methods.create(
        {"name": "Authenticator", "method": "totp", "first_factor_only": False}
    )
    await realm.api.auth_methods.create(
        {"name": "Backup", "method": "backup_codes", "first_factor_only": False}
    )
    user = await realm.user(EMAIL)
    page = await open_portal(browser, realm)
    setup = await browser.submit(page, {}, action_suffix="/account/totp")
    assert heading(setup) == "Set up an authenticator app", describe(setup)
    secret = re.search(r'<p class="secret"><code[^>]*>([A-Z2-7 ]+)</code>', setup.text)
    assert secret
    app = pyotp.TOTP(secret.group(1).replace(" ", ""))
    wrong = await browser.submit(setup, {"code": "000000" if app.now() != "000000" else "111111"})
    assert wrong.status_code == 400 and error_text(wrong), describe(wrong)
    codes_page = await browser.submit(wrong, {"code": app.now()})
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", codes_page.text)
    assert len(codes) == 10, describe(codes_page)
    assert await factor_types(realm, user.id) == ["backup_codes", "totp"]

    page = await browser.get(f"{realm.url}/account")
    [totp_id, backup_id] = re.findall(r'data-verifier="(vrf_[^"]+)"', page.text)
    regenerated = await post(
        browser,
        page,
        "/backup-codes/regenerate",
        section_form(page, "/account/backup-codes/regenerate", "verifier", backup_id),
    )
    fresh = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", regenerated.text)
    assert len(fresh) == 10 and not set(fresh) & set(codes), describe(regenerated)

    # Signing in now asks the code; a spent new backup code works, an old one does not.
    client = await realm.client()
    async with Browser(realm.server_url) as other:
        mfa = await other.sign_in(realm.request(client.id).url, EMAIL)
        assert mfa.url.path.endswith("/mfa"), describe(mfa)

    removed = await post(
        browser, page, "/factors/remove", section_form(page, "/account/factors/remove", "verifier", totp_id)
    )
    assert "is removed" in removed.text, describe(removed)
    assert await factor_types(realm, user.id) == []  # the codes went with it
    deleted = [e async for e in realm.admin.events.list_all(limit=100, event_types="user.mfa.factor-deleted")]
    assert any(e.subject and e.subject["id"] == totp_id for e in deleted)


async def test_passkeys_are_added_and_removed(realm: Realm, browser: Browser) -> None:
    await enable_passkeys(realm, first_factor_only=False)
    user = await realm.user(EMAIL)
    page = await open_portal(browser, realm)
    ceremony = await browser.submit(page, {}, action_suffix="/account/passkeys")
    assert form(ceremony, "/account/passkeys/register"), describe(ceremony)
    key = SoftPasskey()
    options = options_of(ceremony)
    assert options["user"]["name"] == EMAIL
    added = await browser.submit(ceremony, {"credential": key.create(options, realm.server_url)})
    assert added.status_code == 200 and re.findall(r"<li><code>", added.text), describe(
        added
    )  # first factor: codes
    # The ceremony is spent: replaying it changes nothing.
    replay = await browser.submit(ceremony, {"credential": key.create(options, realm.server_url)})
    assert replay.status_code == 400, describe(replay)
    page = await browser.get(f"{realm.url}/account")
    [passkey_id] = [
        v.id
        for v in (await realm.api.user(user.id).verifiers.list()).data
        if (v.model_extra or {}).get("type") == "passkey"
    ]
    removed = await post(
        browser,
        page,
        "/factors/remove",
        section_form(page, "/account/factors/remove", "verifier", passkey_id),
    )
    assert "is removed" in removed.text, describe(removed)
    assert await factor_types(realm, user.id) == []


async def test_trusted_devices_are_revoked(realm: Realm, browser: Browser) -> None:
    user = await realm.user(EMAIL)
    devices = realm.api.user(user.id).trusted_devices
    first = await devices.create({"fingerprint": "ab" * 32})
    await devices.create({"fingerprint": "cd" * 32})
    page = await open_portal(browser, realm)
    done = await post(
        browser,
        page,
        "/devices/revoke",
        section_form(page, "/account/devices/revoke", "device", first.device_id),
    )
    assert "no longer trusted" in done.text, describe(done)
    assert len((await devices.list()).data) == 1
    done = await post(
        browser, done, "/devices/revoke", section_form(done, "/account/devices/revoke", "device", "all")
    )
    assert (await devices.list()).data == []


async def test_an_old_sign_in_signs_in_again_before_a_sensitive_change(
    server: RunningServer, realm: Realm, browser: Browser
) -> None:
    user = await realm.user(EMAIL)
    page = await open_portal(browser, realm)
    await rows(server, "UPDATE sessions SET auth_time = ? WHERE user_id = ?", now_s() - 3600, user.id)
    fields = {"current": PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    again = await browser.submit(page, fields, action_suffix="/account/password")
    assert is_page(again, "login") and f'value="{EMAIL}"' in again.text, describe(again)
    # Nothing changed, and a change that is not sensitive needs no new sign-in.
    async with Browser(realm.server_url) as fresh:
        client = await realm.client()
        assert "code" in callback_params(await fresh.sign_in(realm.request(client.id).url, EMAIL, PASSWORD))
    saved = await browser.submit(page, {"name": "Still me"}, action_suffix="/account/profile")
    assert "Your profile is saved." in saved.text, describe(saved)
    # Proving it again returns to the portal, where the change now goes through.
    back = await browser.submit(await browser.submit(again, {"username": EMAIL}), {"password": PASSWORD})
    assert heading(back) == ACCOUNT and back.url.path == f"/{realm.id}/account", describe(back)
    changed = await browser.submit(back, fields, action_suffix="/account/password")
    assert "Your password is changed" in changed.text, describe(changed)
    assert time.time() > 0


async def test_the_portal_can_be_switched_off(realm: Realm, browser: Browser) -> None:
    await realm.admin.issuers.update(realm.id, {"settings": {"portals": {"account": {"enabled": False}}}})
    closed = await browser.get(f"{realm.url}/account")
    assert closed.status_code == 403, describe(closed)


# --- changes sent twice at once (two tabs, a double click) ------------------------------------------


async def test_two_password_changes_at_once_apply_one(realm: Realm, browser: Browser) -> None:
    user = await realm.user(EMAIL)
    client = await realm.client()
    page = await open_portal(browser, realm)
    first, second = NEW_PASSWORD, NEW_PASSWORD + " 2"
    answers = await asyncio.gather(
        *(
            browser.submit(
                page, {"current": PASSWORD, "new": new, "confirm": new}, action_suffix="/account/password"
            )
            for new in (first, second)
        )
    )
    won = [
        new
        for new, answer in zip((first, second), answers, strict=True)
        if "Your password is changed" in answer.text
    ]
    assert len(won) == 1, [describe(a) for a in answers]
    lost = second if won == [first] else first
    async with Browser(realm.server_url) as fresh:
        assert "code" in callback_params(await fresh.sign_in(realm.request(client.id).url, EMAIL, won[0]))
    async with Browser(realm.server_url) as fresh:
        assert (await fresh.sign_in(realm.request(client.id).url, EMAIL, lost)).status_code == 400
    changed = [
        e
        async for e in realm.admin.events.list_all(limit=100, event_types="user.password.changed")
        if e.subject and e.subject["id"] == user.id
    ]
    assert len(changed) == 1


async def test_a_consent_and_a_session_withdrawn_twice_at_once_end_once(
    realm: Realm, browser: Browser
) -> None:
    user = await realm.user(EMAIL)
    client = await realm.client(require_consent=True)
    consent = await browser.sign_in(realm.request(client.id).url, EMAIL)
    await browser.submit(consent, {"decision": "allow"})
    async with Browser(realm.server_url) as other:
        page = await other.sign_in(realm.request(client.id).url, EMAIL)
        assert "code" in callback_params(page)
    page = await open_portal(browser, realm)
    [consent_id] = re.findall(r'data-consent="([^"]+)"', page.text)
    current = browser.session_cookie
    assert current
    ops = [s.id for s in await realm.sessions(user.id) if s.type == "op" and s.status == "active"]
    target = next(s for s in ops if "this browser" not in page.text.split(f'data-session="{s}"', 1)[1][:600])

    consent_fields = section_form(page, "/account/consents/revoke", "consent", consent_id)
    session_fields = section_form(page, "/account/sessions/revoke", "session", target)
    answers = await asyncio.gather(
        post(browser, page, "/consents/revoke", consent_fields),
        post(browser, page, "/consents/revoke", consent_fields),
        post(browser, page, "/sessions/revoke", session_fields),
        post(browser, page, "/sessions/revoke", session_fields),
    )
    assert sorted(a.status_code for a in answers[:2]) == [200, 404], [describe(a) for a in answers]
    assert sorted(a.status_code for a in answers[2:]) == [200, 404], [describe(a) for a in answers]
    revoked = [
        e
        async for e in realm.admin.events.list_all(limit=100, event_types="user.consent.revoked")
        if e.subject and e.subject["id"] == user.id
    ]
    assert len(revoked) == 1
    ended = [
        e
        async for e in realm.admin.events.list_all(limit=100, event_types="session.terminated")
        if e.subject and e.subject["id"] == target
    ]
    assert len(ended) == 1
