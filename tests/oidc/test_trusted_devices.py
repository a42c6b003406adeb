"""Trusted devices at sign-in (issue 10 item 6, idp-api §C.3, decision 29).

Real server, both backends: after password + TOTP with "Trust this device" ticked, the browser
holds a device cookie and its next sign-in skips the second factor (``amr`` ``pwd``, single-factor
``acr``, the session naming the device) until the device is revoked through the Core API (one or
all), the password changes, or the trust expires. Another user's trust, a tampered cookie and a
request asking for a multi-factor sign-in never skip it.
"""

from __future__ import annotations

import re
import time
from http.cookiejar import Cookie

import httpx
import pyotp
import pytest

from tests.db_query import rows
from tests.harness import RunningServer
from tests.oidc.helpers import (
    CALLBACK,
    PASSWORD,
    AuthRequest,
    Browser,
    Realm,
    callback_params,
    describe,
    form,
)
from tests.oidc.test_mfa import (
    EMAIL,
    MFA_ACR,
    SINGLE_ACR,
    Enrolled,
    enroll,
    id_token_claims,
    second_factor_methods,
)

pytestmark = pytest.mark.anyio

DEVICE_COOKIE = "authpi_device"
TRUST_LABEL = "Trust this device for 30 days"
DAY_S = 86_400


def device_cookie(browser: Browser) -> Cookie | None:
    return next((c for c in browser.http.cookies.jar if c.name == DEVICE_COOKIE), None)


async def password_step(
    browser: Browser, realm: Realm, client_id: str, email: str = EMAIL, **extra: str
) -> tuple[AuthRequest, httpx.Response]:
    """A fresh sign-in (``prompt=login``: even inside a live session) up to after the password."""
    auth = realm.request(client_id, prompt="login", **extra)
    login = await browser.get(auth.url)
    assert login.url.path.endswith("/login"), describe(login)
    password_page = await browser.submit(login, {"username": email})
    return auth, await browser.submit(password_page, {"password": PASSWORD})


def asks_second_factor(page: httpx.Response) -> bool:
    return page.status_code == 200 and page.url.path.endswith("/mfa") and bool(form(page, "/mfa/totp"))


async def trust_this_browser(
    browser: Browser, realm: Realm, client_id: str, enrolled: Enrolled
) -> httpx.Response:
    """Password, then the TOTP code with "Trust this device" ticked; returns the redirect home."""
    _, page = await password_step(browser, realm, client_id)
    assert asks_second_factor(page), describe(page)
    assert TRUST_LABEL in page.text and 'name="trust_device"' in page.text
    done = await browser.submit(page, {"code": enrolled.next_code(), "trust_device": "1"})
    assert "code" in callback_params(done), describe(done)
    return done


async def skips_second_factor(browser: Browser, realm: Realm, client_id: str) -> bool:
    _, page = await password_step(browser, realm, client_id)
    if page.status_code in (302, 303) and page.headers["location"].startswith(CALLBACK):
        return True
    assert asks_second_factor(page), describe(page)
    return False


async def device_ids(realm: Realm, user_id: str) -> list[str]:
    return [d.id for d in (await realm.api.user(user_id).trusted_devices.list()).data]


@pytest.fixture
async def enrolled(realm: Realm) -> Enrolled:
    await second_factor_methods(realm)
    return await enroll(realm)


async def test_a_trusted_browser_skips_the_second_factor_until_the_device_is_revoked(
    realm: Realm, browser: Browser, enrolled: Enrolled
) -> None:
    client = await realm.client()
    done = await trust_this_browser(browser, realm, client.id, enrolled)
    [set_cookie] = [h for h in done.headers.get_list("set-cookie") if h.startswith(f"{DEVICE_COOKIE}=")]
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in set_cookie.split(";")}
    assert "httponly" in attributes and attributes["samesite"].lower() == "samesite=lax"
    assert attributes["path"] == f"Path=/{realm.id}" and "secure" not in attributes  # http public URL
    max_age = int(attributes["max-age"].split("=")[1])
    assert 30 * DAY_S - 60 <= max_age <= 30 * DAY_S
    cookie = device_cookie(browser)
    assert cookie is not None and cookie.value
    [device] = (await realm.api.user(enrolled.user_id).trusted_devices.list()).data
    assert device.id.startswith("dev_") and device.last_used_at is None
    assert device.fingerprint != cookie.value and cookie.value not in str(device.model_dump())
    assert abs(device.expires_at - (device.trusted_at + 30 * DAY_S * 1000)) < 1000
    assert device.user_agent  # the browser's, as it signed in

    # The next sign-in in this browser: the password alone, single-factor and saying so.
    auth, skipped = await password_step(browser, realm, client.id)
    claims = await id_token_claims(realm, client, skipped, auth)
    assert claims["amr"] == ["pwd"] and claims["acr"] == SINGLE_ACR
    sessions = await realm.sessions(enrolled.user_id)
    newest = max((s for s in sessions if s.type == "op"), key=lambda s: s.created_at)
    assert newest.authentication["trusted_device_id"] == device.id
    assert newest.authentication["amr"] == ["pwd"]
    [used] = (await realm.api.user(enrolled.user_id).trusted_devices.list()).data
    assert used.last_used_at is not None and used.last_used_at >= device.trusted_at

    # Revoked through the Core API: asked again.
    await realm.api.user(enrolled.user_id).trusted_devices.delete(device.id)
    assert not await skips_second_factor(browser, realm, client.id)


async def test_an_unticked_box_trusts_nothing(realm: Realm, browser: Browser, enrolled: Enrolled) -> None:
    client = await realm.client()
    _, page = await password_step(browser, realm, client.id)
    done = await browser.submit(page, {"code": enrolled.next_code()})
    assert "code" in callback_params(done) and device_cookie(browser) is None
    assert await device_ids(realm, enrolled.user_id) == []
    assert not await skips_second_factor(browser, realm, client.id)


async def test_revoke_all_ends_the_trust(realm: Realm, browser: Browser, enrolled: Enrolled) -> None:
    client = await realm.client()
    await trust_this_browser(browser, realm, client.id, enrolled)
    assert await skips_second_factor(browser, realm, client.id)
    revoked = await realm.api.user(enrolled.user_id).trusted_devices.revoke_all()
    assert revoked.revoked_count == 1
    assert not await skips_second_factor(browser, realm, client.id)


async def test_a_password_change_ends_the_trust(realm: Realm, browser: Browser, enrolled: Enrolled) -> None:
    client = await realm.client()
    await trust_this_browser(browser, realm, client.id, enrolled)
    # The same password set again still counts as a change: every trust given before it ends.
    await realm.api.users.update(enrolled.user_id, {"password": PASSWORD})
    assert await device_ids(realm, enrolled.user_id) == []
    assert not await skips_second_factor(browser, realm, client.id)


async def test_an_expired_trust_asks_again(
    realm: Realm, browser: Browser, enrolled: Enrolled, server: RunningServer
) -> None:
    client = await realm.client()
    await trust_this_browser(browser, realm, client.id, enrolled)
    past = int(time.time() * 1000) - 1000
    await rows(server, "UPDATE trusted_devices SET expires_at = ? WHERE user_id = ?", past, enrolled.user_id)
    assert not await skips_second_factor(browser, realm, client.id)
    assert await device_ids(realm, enrolled.user_id) == []  # no longer listed


async def test_another_users_trust_and_a_tampered_cookie_do_not_skip(
    realm: Realm, browser: Browser, enrolled: Enrolled
) -> None:
    client = await realm.client()
    other_email = "ada@example.com"
    await enroll(realm, other_email)
    await trust_this_browser(browser, realm, client.id, enrolled)

    # Another user of the same issuer in the same browser: the cookie is not theirs.
    _, page = await password_step(browser, realm, client.id, other_email)
    assert asks_second_factor(page), describe(page)

    # The trusted user with a cookie changed by one character: no device matches it.
    cookie = device_cookie(browser)
    assert cookie is not None and cookie.value is not None
    original = cookie.value
    cookie.value = ("A" if original[0] != "A" else "B") + original[1:]
    assert not await skips_second_factor(browser, realm, client.id)
    cookie.value = original
    assert await skips_second_factor(browser, realm, client.id)


async def test_a_request_asking_for_mfa_is_not_satisfied_by_a_trusted_device(
    realm: Realm, browser: Browser, enrolled: Enrolled
) -> None:
    client = await realm.client()
    await trust_this_browser(browser, realm, client.id, enrolled)
    _, page = await password_step(browser, realm, client.id, acr_values=MFA_ACR)
    assert asks_second_factor(page), describe(page)


async def test_trust_chosen_while_enrolling_a_required_second_factor(realm: Realm, browser: Browser) -> None:
    """The box on the enrollment page survives the backup-codes page that follows it."""
    await second_factor_methods(realm)
    await realm.api.update({"settings": {"security": {"mfa": {"required": True, "trusted_device_days": 7}}}})
    user = await realm.user(EMAIL)
    client = await realm.client()
    _, page = await password_step(browser, realm, client.id)
    assert page.url.path.endswith("/mfa/enroll") and "Trust this device for 7 days" in page.text, describe(
        page
    )
    secret = re.search(r'<p class="secret"><code[^>]*>([A-Z2-7 ]+)</code>', page.text)
    assert secret
    app = pyotp.TOTP(secret.group(1).replace(" ", ""))
    codes_page = await browser.submit(page, {"code": app.now(), "trust_device": "1"})
    assert "trust_device" not in codes_page.text  # nothing more to tick once the factor is proven
    done = await browser.submit(codes_page, {})
    assert "code" in callback_params(done), describe(done)
    [device] = (await realm.api.user(user.id).trusted_devices.list()).data
    assert abs(device.expires_at - (device.trusted_at + 7 * DAY_S * 1000)) < 1000
    assert await skips_second_factor(browser, realm, client.id)


async def test_zero_days_switches_trusted_devices_off(
    realm: Realm, browser: Browser, enrolled: Enrolled
) -> None:
    client = await realm.client()
    await trust_this_browser(browser, realm, client.id, enrolled)
    await realm.api.update({"settings": {"security": {"mfa": {"trusted_device_days": 0}}}})
    _, page = await password_step(browser, realm, client.id)
    assert asks_second_factor(page) and 'name="trust_device"' not in page.text, describe(page)
