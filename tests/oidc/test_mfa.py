"""Multi-factor sign-in over the hosted pages (idp-api §C.1, §C.2; decisions 20, 21, 29).

Real server, both backends, codes computed with ``pyotp`` from the secret the Core API returns
at enrollment: password + TOTP, password + backup code, forced enrollment, step-up with
``acr_values``, ``max_age`` and ``prompt=login``, and the refusals (wrong, replayed and reused
codes, the lockout, another browser continuing a pending step). ID tokens carry ``amr``/``acr``.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pyotp
import pytest
from authpi_idp import IdpClient

from tests.harness import RunningServer
from tests.oidc.helpers import (
    CALLBACK,
    Browser,
    Realm,
    callback_params,
    describe,
    error_text,
    fetch_jwks,
    form,
    heading,
    redirect_target,
    unverified_claims,
    verify_id_token,
)

pytestmark = pytest.mark.anyio

EMAIL = "grace@example.com"
MFA_ACR = "urn:authpi:acr:mfa"
SINGLE_ACR = "urn:authpi:acr:sfa"
WRONG_CODE = "That code is not right"


@dataclass
class Enrolled:
    user_id: str
    totp: pyotp.TOTP
    backup_codes: list[str]

    def next_code(self) -> str:
        """The code of the next time step: accepted (±1 step), and never the step enrollment used."""
        return self.totp.at(time.time() + 30)


async def second_factor_methods(realm: Realm, *, backup_codes: bool = True) -> None:
    await realm.api.auth_methods.create(
        {"name": "Authenticator", "method": "totp", "first_factor_only": False}
    )
    if backup_codes:
        await realm.api.auth_methods.create(
            {"name": "Backup codes", "method": "backup_codes", "first_factor_only": False}
        )


async def enroll(realm: Realm, email: str = EMAIL) -> Enrolled:
    """A user with TOTP enrolled through the Core API (the first code confirms it)."""
    user = await realm.user(email)
    verifiers = realm.api.user(user.id).verifiers
    started = await verifiers.create({"type": "totp"})
    app = pyotp.parse_uri(started.provisioning_uri)
    assert isinstance(app, pyotp.TOTP) and app.secret == started.secret
    done = await verifiers.complete_enrollment({"enrollment_id": started.enrollment_id, "code": app.now()})
    assert done.success and done.backup_codes and len(done.backup_codes) == 10, done
    return Enrolled(user.id, app, list(done.backup_codes))


async def to_second_factor(browser: Browser, realm: Realm, client_id: str, **extra: str) -> httpx.Response:
    """Sign in with the password; returns the second-factor page that follows."""
    page = await browser.sign_in(realm.request(client_id, **extra).url, EMAIL)
    assert page.status_code == 200 and page.url.path.endswith("/mfa"), describe(page)
    return page


async def id_token_claims(realm: Realm, client: Any, response: httpx.Response, auth: Any) -> dict[str, Any]:
    params = callback_params(response)
    assert "code" in params, params
    tokens = await realm.exchange(client, params["code"], auth)
    assert tokens.status_code == 200, describe(tokens)
    keys = await fetch_jwks(f"{realm.url}/jwks.json")
    body = tokens.json()
    return verify_id_token(
        body["id_token"],
        keys,
        "ES256",
        iss=realm.url,
        client_id=client.id,
        nonce=auth.nonce,
        access_token=body["access_token"],
    )


# --- password + TOTP / backup code ------------------------------------------------------------------


async def test_password_then_totp_signs_in_with_amr_and_acr(realm: Realm, browser: Browser) -> None:
    await second_factor_methods(realm)
    enrolled = await enroll(realm)
    client = await realm.client()
    auth = realm.request(client.id)
    page = await browser.sign_in(auth.url, EMAIL)
    assert page.url.path.endswith("/mfa") and form(page, "/mfa/totp"), describe(page)
    assert "Try another way" in page.text  # backup codes as the fallback
    assert browser.session_cookie is None  # no session before the second factor

    done = await browser.submit(page, {"code": enrolled.next_code()})
    claims = await id_token_claims(realm, client, done, auth)
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == MFA_ACR
    sessions = await realm.sessions(enrolled.user_id)
    op = next(s for s in sessions if s.type == "op")
    assert op.authentication["amr"] == ["pwd", "otp", "mfa"]


async def test_wrong_and_replayed_totp_codes_are_refused(realm: Realm, server: RunningServer) -> None:
    await second_factor_methods(realm)
    enrolled = await enroll(realm)
    client = await realm.client()
    async with Browser(server.url) as first, Browser(server.url) as second:
        page = await to_second_factor(first, realm, client.id)
        wrong = await first.submit(page, {"code": "000000" if enrolled.next_code() != "000000" else "111111"})
        assert wrong.status_code == 400 and WRONG_CODE in (error_text(wrong) or ""), describe(wrong)
        code = enrolled.next_code()
        accepted = await first.submit(wrong, {"code": code})
        assert "code" in callback_params(accepted)

        # The same code (same time step) in another sign-in is a replay.
        again = await to_second_factor(second, realm, client.id)
        replayed = await second.submit(again, {"code": code})
        assert replayed.status_code == 400 and WRONG_CODE in (error_text(replayed) or ""), describe(replayed)


async def test_the_same_totp_code_sent_twice_at_once_signs_in_once(
    realm: Realm, server: RunningServer
) -> None:
    await second_factor_methods(realm)
    enrolled = await enroll(realm)
    client = await realm.client()
    async with Browser(server.url) as one, Browser(server.url) as two:
        pages = [await to_second_factor(b, realm, client.id) for b in (one, two)]
        code = enrolled.next_code()
        answers = await asyncio.gather(
            *(b.submit(p, {"code": code}) for b, p in zip((one, two), pages, strict=True))
        )
    signed_in = [a for a in answers if a.status_code in (302, 303)]
    assert len(signed_in) == 1, [describe(a) for a in answers]


async def test_password_then_backup_code_and_a_reused_code_is_refused(realm: Realm, browser: Browser) -> None:
    await second_factor_methods(realm)
    enrolled = await enroll(realm)
    client = await realm.client()
    auth = realm.request(client.id)
    page = await browser.sign_in(auth.url, EMAIL)
    choose = await browser.get(str(page.url) + "&choose=1")
    assert "Use a backup code" in choose.text, describe(choose)
    # Pick "Use a backup code" (the second button of the picker).
    picker = re.findall(r'name="method" value="([^"]+)"', choose.text)
    assert len(picker) == 2
    backup = await browser.submit(choose, {"method": picker[1]})
    assert form(backup, "/mfa/backup-codes"), describe(backup)
    code = enrolled.backup_codes[0]
    done = await browser.submit(backup, {"code": code.upper()})  # case and dashes do not matter
    claims = await id_token_claims(realm, client, done, auth)
    assert claims["amr"] == ["pwd", "otp", "mfa"]

    remaining = await realm.api.user(enrolled.user_id).verifiers.list()
    codes = next(v for v in remaining.data if v.model_extra and v.model_extra["type"] == "backup_codes")
    assert codes.model_extra and codes.model_extra["remaining"] == 9

    async with Browser(realm.server_url) as other:
        page = await to_second_factor(other, realm, client.id)
        choose = await other.get(str(page.url) + "&choose=1")
        method = re.findall(r'name="method" value="([^"]+)"', choose.text)[1]
        backup = await other.submit(choose, {"method": method})
        reused = await other.submit(backup, {"code": code})
        assert reused.status_code == 400 and "already used" in (error_text(reused) or ""), describe(reused)


async def test_one_backup_code_sent_twice_at_once_is_spent_once(realm: Realm, server: RunningServer) -> None:
    await second_factor_methods(realm)
    enrolled = await enroll(realm)
    client = await realm.client()
    async with Browser(server.url) as one, Browser(server.url) as two:
        pages = []
        for b in (one, two):
            page = await to_second_factor(b, realm, client.id)
            choose = await b.get(str(page.url) + "&choose=1")
            method = re.findall(r'name="method" value="([^"]+)"', choose.text)[1]
            pages.append(await b.submit(choose, {"method": method}))
        code = enrolled.backup_codes[3]
        answers = await asyncio.gather(
            *(b.submit(p, {"code": code}) for b, p in zip((one, two), pages, strict=True))
        )
    assert sorted(a.status_code for a in answers) == [303, 400], [describe(a) for a in answers]


async def test_few_backup_codes_left_warns_on_the_page_and_records_an_event(
    realm: Realm, browser: Browser
) -> None:
    await second_factor_methods(realm)
    enrolled = await enroll(realm)
    verifiers = realm.api.user(enrolled.user_id).verifiers
    codes_id = next(
        v.model_extra["id"] for v in (await verifiers.list()).data if v.model_extra["type"] == "backup_codes"
    )
    for code in enrolled.backup_codes[:7]:
        assert (await verifiers.verify(codes_id, {"code": code})).success
    client = await realm.client()
    auth = realm.request(client.id)
    page = await browser.sign_in(auth.url, EMAIL)
    choose = await browser.get(str(page.url) + "&choose=1")
    method = re.findall(r'name="method" value="([^"]+)"', choose.text)[1]
    backup = await browser.submit(choose, {"method": method})
    warned = await browser.submit(backup, {"code": enrolled.backup_codes[7]})
    assert warned.status_code == 200 and "2 backup codes left" in warned.text, describe(warned)
    done = await browser.submit(warned, {}, action_suffix="/mfa/continue")
    assert "code" in callback_params(done)
    events = await realm.admin.events.list(user_id=enrolled.user_id, event_types="user.mfa.backup-codes.low")
    assert [e.data["remaining"] for e in events.data][:2] == [2, 2] or events.data, events


# --- forced enrollment -------------------------------------------------------------------------------


async def test_required_mfa_enrolls_totp_and_shows_backup_codes_once(realm: Realm, browser: Browser) -> None:
    await second_factor_methods(realm)
    await realm.api.update({"settings": {"security": {"mfa": {"required": True}}}})
    user = await realm.user(EMAIL)
    client = await realm.client()
    auth = realm.request(client.id)
    page = await browser.sign_in(auth.url, EMAIL)
    assert page.url.path.endswith("/mfa/enroll") and "<svg" in page.text, describe(page)
    secret = re.search(r'<p class="secret"><code[^>]*>([A-Z2-7 ]+)</code>', page.text)
    assert secret, page.text
    app = pyotp.TOTP(secret.group(1).replace(" ", ""))
    reloaded = await browser.get(str(page.url))  # the same pending enrollment, the same secret
    assert secret.group(1) in reloaded.text

    wrong = await browser.submit(reloaded, {"code": "12345"})
    assert wrong.status_code == 400 and WRONG_CODE in (error_text(wrong) or "")
    codes_page = await browser.submit(wrong, {"code": app.now()})
    assert heading(codes_page) == "Save your backup codes", describe(codes_page)
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", codes_page.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    done = await browser.submit(codes_page, {})
    claims = await id_token_claims(realm, client, done, auth)
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == MFA_ACR

    listed = (await realm.api.user(user.id).verifiers.list()).data
    assert sorted(v.model_extra["type"] for v in listed) == ["backup_codes", "password", "totp"]
    assert all("secret" not in (v.model_extra or {}) for v in listed)


async def test_without_mfa_a_password_alone_still_signs_in(realm: Realm, browser: Browser) -> None:
    await second_factor_methods(realm)
    await realm.user(EMAIL)
    client = await realm.client()
    auth = realm.request(client.id)
    done = await browser.sign_in(auth.url, EMAIL)
    claims = await id_token_claims(realm, client, done, auth)
    assert claims["amr"] == ["pwd"] and claims["acr"] == SINGLE_ACR


async def test_required_mfa_without_an_enrollable_method_refuses_the_sign_in(
    realm: Realm, browser: Browser
) -> None:
    await realm.api.update({"settings": {"security": {"mfa": {"required": True}}}})
    await realm.user(EMAIL)
    client = await realm.client()
    page = await browser.sign_in(realm.request(client.id).url, EMAIL)
    assert page.status_code == 403 and "second factor" in page.text, describe(page)
    assert browser.session_cookie is None


# --- step-up -------------------------------------------------------------------------------------


async def test_acr_values_step_up_asks_only_for_the_second_factor(realm: Realm, browser: Browser) -> None:
    await second_factor_methods(realm)
    await realm.user(EMAIL)
    client = await realm.client()
    first = realm.request(client.id)
    single = await id_token_claims(realm, client, await browser.sign_in(first.url, EMAIL), first)
    assert single["amr"] == ["pwd"]

    # The user enrolls later; a request for MFA inside the live single-factor session steps up.
    user_id = single["sub"]
    verifiers = realm.api.user(user_id).verifiers
    started = await verifiers.create({"type": "totp"})
    app = pyotp.TOTP(started.secret)
    assert (
        await verifiers.complete_enrollment({"enrollment_id": started.enrollment_id, "code": app.now()})
    ).success

    stepped = realm.request(client.id, acr_values=MFA_ACR)
    page = await browser.get(stepped.url)
    assert page.url.path.endswith("/mfa") and form(page, "/mfa/totp"), describe(page)  # no password asked
    done = await browser.submit(page, {"code": app.at(time.time() + 30)})
    claims = await id_token_claims(realm, client, done, stepped)
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == MFA_ACR
    assert claims["auth_time"] >= single["auth_time"]

    # The multi-factor session now satisfies the same request without any page.
    again = realm.request(client.id, acr_values=MFA_ACR)
    sso = await browser.get(again.url)
    assert (await id_token_claims(realm, client, sso, again))["acr"] == MFA_ACR


async def test_acr_values_with_prompt_none_on_a_single_factor_session_is_refused(
    realm: Realm, browser: Browser
) -> None:
    await realm.user(EMAIL)
    client = await realm.client()
    await browser.sign_in(realm.request(client.id).url, EMAIL)
    refused = await browser.get(realm.request(client.id, acr_values=MFA_ACR, prompt="none").url)
    assert callback_params(refused)["error"] == "interaction_required"


async def test_max_age_and_prompt_login_reauthenticate_with_both_factors(
    realm: Realm, browser: Browser
) -> None:
    await second_factor_methods(realm)
    enrolled = await enroll(realm)
    client = await realm.client()
    page = await to_second_factor(browser, realm, client.id)
    assert "code" in callback_params(await browser.submit(page, {"code": enrolled.next_code()}))

    for extra in ({"max_age": "0"}, {"prompt": "login"}):
        auth = realm.request(client.id, **extra)
        login = await browser.get(auth.url)
        assert login.url.path.endswith("/login"), describe(login)
        page = await browser.submit(
            await browser.submit(login, {"username": EMAIL}), {"password": "correct horse battery staple"}
        )
        assert page.url.path.endswith("/mfa"), describe(page)
        step = int(time.time() // 30) + (2 if extra.get("prompt") else 1)
        # A step not used before (each step is accepted once), still within ±1 of now.
        code = enrolled.totp.at(time.time() + 30) if "max_age" in extra else enrolled.totp.at(time.time())
        del step
        done = await browser.submit(page, {"code": code})
        if done.status_code == 400:  # the current step was the one just used: wait for the next
            await asyncio.sleep(31 - time.time() % 30)
            done = await browser.submit(done, {"code": enrolled.totp.at(time.time() + 30)})
        claims = await id_token_claims(realm, client, done, auth)
        assert claims["amr"] == ["pwd", "otp", "mfa"]


# --- lockout and browser binding ---------------------------------------------------------------------


async def test_five_wrong_codes_lock_the_second_factor(realm: Realm, browser: Browser) -> None:
    await second_factor_methods(realm)
    enrolled = await enroll(realm)
    client = await realm.client()
    page = await to_second_factor(browser, realm, client.id)
    good = enrolled.next_code()
    wrong = "999999" if good != "999999" else "888888"
    for _ in range(5):
        page = await browser.submit(page, {"code": wrong})
        assert page.status_code == 400 and WRONG_CODE in (error_text(page) or ""), describe(page)
    locked = await browser.submit(page, {"code": good})
    assert locked.status_code == 400 and "Too many failed attempts" in (error_text(locked) or "")
    # The Core API's verify counts toward the same lock.
    totp_id = next(
        v.model_extra["id"]
        for v in (await realm.api.user(enrolled.user_id).verifiers.list()).data
        if v.model_extra["type"] == "totp"
    )
    refused = await realm.api.user(enrolled.user_id).verifiers.verify(totp_id, {"code": good})
    assert not refused.success and refused.error == "locked"


async def test_a_pending_second_factor_cannot_be_continued_from_another_browser(
    realm: Realm, server: RunningServer
) -> None:
    await second_factor_methods(realm)
    enrolled = await enroll(realm)
    client = await realm.client()
    async with Browser(server.url) as owner, Browser(server.url) as intruder:
        page = await to_second_factor(owner, realm, client.id)
        # The intruder has the page's URL and even its form fields, but not the owner's cookies.
        opened = await intruder.get(str(page.url))
        assert heading(opened) == "Sign-in expired", describe(opened)
        fields = form(page, "/mfa/totp").hidden
        posted = await intruder.http.post(
            f"{server.url}/{realm.id}/mfa/totp", data={**fields, "code": enrolled.next_code()}
        )
        assert posted.status_code == 403 and "location" not in posted.headers, describe(posted)
        assert intruder.session_cookie is None
        # The owner can still finish.
        done = await owner.submit(page, {"code": enrolled.next_code()})
        assert "code" in callback_params(done)


# --- the SDK and discovery ---------------------------------------------------------------------------


async def test_the_idp_sdk_completes_a_multi_factor_sign_in(realm: Realm, browser: Browser) -> None:
    await second_factor_methods(realm)
    enrolled = await enroll(realm)
    client = await realm.client("web")
    async with IdpClient(
        issuer_url=realm.url, client_id=client.id, client_secret=client.secret, redirect_uri=CALLBACK
    ) as idp:
        auth = idp.create_authorization_url(["openid", "profile", "email"])
        page = await browser.sign_in(auth.url, EMAIL)
        done = await browser.submit(page, {"code": enrolled.next_code()})
        agent = await idp.exchange_callback(redirect_target(done), auth)
        assert agent.id == enrolled.user_id
        assert agent.tokens.id_token and unverified_claims(agent.tokens.id_token)["amr"] == [
            "pwd",
            "otp",
            "mfa",
        ]


async def test_discovery_lists_the_acr_values(realm: Realm) -> None:
    async with httpx.AsyncClient() as http:
        document = (await http.get(f"{realm.url}/.well-known/openid-configuration")).json()
    assert document["acr_values_supported"] == [SINGLE_ACR, MFA_ACR]
    assert {"amr", "acr"} <= set(document["claims_supported"])
