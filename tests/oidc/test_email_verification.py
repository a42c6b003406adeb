"""Email verification (issue 11 item 5) over real HTTP on both backends, with mail read from an
SMTP server (aiosmtpd) in the test process: codes and links come from the received mail, never
from the database.

Sign-up to a domain-restricted issuer (or one that asks for it) cannot complete without the
mailbox: no account exists until the code or link comes back, a wrong code is refused, a taken
address gets no mail and the same page, and the ID token's ``email_verified`` is true. In the
account portal a changed address replaces the old one only once the new one is proven.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage

import httpx
import pytest
from authpi_admin import AuthPIAdmin

from tests.conftest import BACKENDS, skip_without_postgres
from tests.core.message_outbox import Mailbox, SmsGateway, sms_gateway, smtp_server
from tests.core.webhook_receiver import eventually
from tests.harness import RunningServer, run_server
from tests.oidc.helpers import (
    PASSWORD,
    Browser,
    Realm,
    callback_params,
    describe,
    error_text,
    heading,
    new_realm,
    unverified_claims,
)
from tests.oidc.soft_passkey import SoftPasskey
from tests.oidc.test_lockout import signup_page, without_form_secrets
from tests.oidc.test_passkeys import enable_passkeys, options_of
from tests.oidc.test_portal import ACCOUNT, open_portal

pytestmark = pytest.mark.anyio

CHECK = "Check your email"
SMS_SECRET = "sms-secret-for-verification-tests"
# The send limits on, every other limit out of the way: three codes per address an hour.
SEND_LIMITS = {
    "AUTHPI_RATE_LIMITS_ENABLED": "true",
    "AUTHPI_RATE_LIMIT_LOGIN": "1000/minute",
    "AUTHPI_RATE_LIMIT_LOGIN_ACCOUNT": "1000/minute",
    "AUTHPI_RATE_LIMIT_AUTHORIZE": "1000/minute",
    "AUTHPI_SEND_LIMIT_PER_RECIPIENT": "3/hour",
    "AUTHPI_SEND_LIMIT_PER_IP": "1000/hour",
}
DELIVERY = {
    "AUTHPI_ALLOW_PRIVATE_NETWORKS": "true",
    "AUTHPI_EMAIL_FROM": "Sign-in <noreply@acme.example>",
    "AUTHPI_MESSAGE_POLL_INTERVAL": "0.2",
    "AUTHPI_MESSAGE_RETRY_DELAY": "0.2",
}


class Mailing:
    def __init__(self, server: RunningServer, mailbox: Mailbox, gateway: SmsGateway | None = None) -> None:
        self.server, self.mailbox, self.gateway = server, mailbox, gateway

    async def text_code_for(self, number: str) -> str:
        """The code of the newest SMS to ``number`` the gateway received (its HMAC checked)."""
        assert self.gateway is not None

        async def arrived() -> bool:
            return any(m["to"] == number for m in self.gateway.received)  # type: ignore[union-attr]

        await eventually(arrived, timeout=30)
        text = [m["text"] for m in self.gateway.received if m["to"] == number][-1]
        found = re.match(r"(\d{6}) ", text)
        assert found, text
        return found.group(1)

    async def mail_to(self, address: str) -> EmailMessage:
        async def arrived() -> bool:
            return bool(self.mailbox.to(address))

        await eventually(arrived, timeout=30)
        return self.mailbox.to(address)[-1]

    async def code_for(self, address: str) -> str:
        text = body(await self.mail_to(address))
        found = re.search(r"^\s+(\d{6})\s*$", text, re.M)
        assert found, text
        return found.group(1)


def body(mail: EmailMessage) -> str:
    part = mail.get_body(("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


@pytest.fixture(scope="module", params=BACKENDS)
def mailing(request: pytest.FixtureRequest) -> Iterator[Mailing]:
    """A server that sends its email to the test's SMTP server."""
    skip_without_postgres(request.param)
    with smtp_server() as (mailbox, port), sms_gateway(SMS_SECRET) as gateway:
        env = {
            **DELIVERY,
            **SEND_LIMITS,
            "AUTHPI_SMTP_URL": f"smtp://127.0.0.1:{port}",
            "AUTHPI_SMS_WEBHOOK_URL": gateway.url,
            "AUTHPI_SMS_WEBHOOK_SECRET": SMS_SECRET,
        }
        with run_server(request.param, env) as running:
            yield Mailing(running, mailbox, gateway)


@pytest.fixture
async def realm(mailing: Mailing) -> AsyncIterator[Realm]:
    """A realm whose sign-up is restricted to example.org (so addresses are always proven)."""
    async with AuthPIAdmin(api_key=mailing.server.api_key, base_url=mailing.server.url) as admin:
        realm = await new_realm(admin, mailing.server, signup=True)
        await admin.issuers.update(
            realm.id, {"settings": {"access": {"allowed_email_domains": ["example.org"]}}}
        )
        yield realm


async def users_named(mailing: Mailing, realm: Realm, email: str) -> list[str]:
    """The IDs of the realm's users with this username (the Core API's ``q`` filter)."""
    server = mailing.server
    async with httpx.AsyncClient(base_url=server.url, auth=server.api_key, timeout=30) as http:
        found = await http.get(
            f"/v1/accounts/{server.account_id}/issuers/{realm.id}/users", params={"q": email}
        )
        assert found.status_code == 200, found.text
        return [str(u["user_id"]) for u in found.json()["data"]]


async def test_a_restricted_sign_up_cannot_complete_without_the_mailbox(
    mailing: Mailing, realm: Realm
) -> None:
    client = await realm.client()
    email = "ada@example.org"
    async with Browser(realm.server_url) as browser:
        page = await signup_page(browser, realm, client.id)
        outside = await browser.submit(
            page, {"email": "ada@example.com", "name": "Ada", "password": PASSWORD}
        )
        assert outside.status_code == 400 and "domain" in (error_text(outside) or ""), describe(outside)
        check = await browser.submit(page, {"email": email, "name": "Ada", "password": PASSWORD})
        assert check.status_code == 200 and heading(check) == CHECK, describe(check)
        # No account yet: the password signs nobody in, whatever is typed in the code field.
        assert await users_named(mailing, realm, email) == []
        async with Browser(realm.server_url) as other:
            refused = await other.sign_in(realm.request(client.id).url, email)
            assert refused.status_code == 400, describe(refused)
        code = await mailing.code_for(email)
        wrong = await browser.submit(check, {"code": "000000" if code != "000000" else "111111"})
        assert wrong.status_code == 400 and "not right" in (error_text(wrong) or ""), describe(wrong)
        assert await users_named(mailing, realm, email) == []
        confirmed = await browser.submit(wrong, {"code": code})
        assert "confirmed" in confirmed.text and confirmed.status_code == 200, describe(confirmed)
        # The code is spent: presenting it again finds nothing to confirm.
        again = await browser.submit(wrong, {"code": code})
        assert again.status_code == 400, describe(again)
    # The code is spent, the account exists with its address verified, and tokens say so.
    [user_id] = await users_named(mailing, realm, email)
    stored = await realm.api.users.get(user_id)
    assert stored.profile["email_verified"] is True and stored.profile["name"] == "Ada"
    tokens = await realm.tokens(client, email)
    assert unverified_claims(tokens["id_token"])["email_verified"] is True
    verified = [e async for e in realm.admin.events.list_all(limit=100, event_types="user.email.verified")]
    assert any(e.subject and e.subject["id"] == user_id for e in verified)


async def test_the_link_in_the_mail_also_proves_the_address(mailing: Mailing, realm: Realm) -> None:
    client = await realm.client()
    email = "linked@example.org"
    async with Browser(realm.server_url) as browser:
        page = await signup_page(browser, realm, client.id)
        check = await browser.submit(page, {"email": email, "name": "", "password": PASSWORD})
        assert heading(check) == CHECK, describe(check)
    link = re.search(r"(http\S+/verify-email/\S+)", body(await mailing.mail_to(email)))
    assert link
    # Another browser (the mail app's) opens it: a confirmation page, nothing changes on GET.
    async with Browser(realm.server_url) as mail_app:
        landing = await mail_app.get(link.group(1))
        assert landing.status_code == 200 and email in landing.text, describe(landing)
        assert await users_named(mailing, realm, email) == []
        done = await mail_app.submit(landing, {})
        assert done.status_code == 200 and heading(done) == "Email confirmed", describe(done)
        spent = await mail_app.get(link.group(1))
        assert spent.status_code == 400, describe(spent)
    assert len(await users_named(mailing, realm, email)) == 1
    assert "code" in callback_params(
        await Browser(realm.server_url).sign_in(realm.request(client.id).url, email)
    )


async def test_a_taken_address_gets_the_same_page_and_no_mail(mailing: Mailing, realm: Realm) -> None:
    client = await realm.client()
    await realm.user("owner@example.org")
    async with Browser(realm.server_url) as browser:
        taken = await browser.submit(
            await signup_page(browser, realm, client.id),
            {"email": "owner@example.org", "name": "X", "password": "another password 1"},
        )
        fresh = await browser.submit(
            await signup_page(browser, realm, client.id),
            {"email": "fresh@example.org", "name": "X", "password": "another password 1"},
        )
    assert taken.status_code == fresh.status_code == 200
    assert without_form_secrets(taken).replace("owner@", "fresh@") == without_form_secrets(fresh)
    await mailing.mail_to("fresh@example.org")
    await asyncio.sleep(1)
    assert mailing.mailbox.to("owner@example.org") == []


async def test_an_issuer_can_ask_for_verification_without_a_domain_list(
    mailing: Mailing, realm: Realm
) -> None:
    await realm.admin.issuers.update(
        realm.id, {"settings": {"access": {"allowed_email_domains": [], "verify_email": True}}}
    )
    client = await realm.client()
    async with Browser(realm.server_url) as browser:
        check = await browser.submit(
            await signup_page(browser, realm, client.id), {"email": "any@example.net", "password": PASSWORD}
        )
        assert heading(check) == CHECK, describe(check)
        confirmed = await browser.submit(check, {"code": await mailing.code_for("any@example.net")})
        assert "confirmed" in confirmed.text, describe(confirmed)


async def test_a_passkey_sign_up_proves_the_address_before_the_ceremony(
    mailing: Mailing, realm: Realm
) -> None:
    await enable_passkeys(realm)
    client = await realm.client()
    email = "keyed@example.org"
    async with Browser(realm.server_url) as browser:
        login = await browser.get(realm.request(client.id).url)
        signup = await browser.get(
            str(
                login.url.join(
                    re.search(r'href="([^"]*passkey/signup[^"]*)"', login.text).group(1).replace("&amp;", "&")
                )
            )  # type: ignore[union-attr]
        )
        check = await browser.submit(signup, {"email": email, "name": "Key"})
        assert heading(check) == CHECK and 'id="passkey-options"' not in check.text, describe(check)
        ceremony = await browser.submit(check, {"code": await mailing.code_for(email)})
        key = SoftPasskey()
        done = await browser.submit(
            ceremony, {"credential": key.create(options_of(ceremony), realm.server_url)}
        )
        assert done.status_code == 200, describe(done)
    [user_id] = await users_named(mailing, realm, email)
    assert (await realm.api.users.get(user_id)).profile["email_verified"] is True


async def test_a_changed_address_replaces_the_old_one_only_once_proven(
    mailing: Mailing, realm: Realm
) -> None:
    user = await realm.user("before@example.com", email_verified=True)
    client = await realm.client()
    new = "after@example.com"
    async with Browser(realm.server_url) as browser:
        page = await open_portal(browser, realm, "before@example.com")
        check = await browser.submit(page, {"email": new}, action_suffix="/account/email")
        assert heading(check) == CHECK, describe(check)
        # Until proven, the old address is the account's: it signs in, the new one does not.
        assert (await realm.api.users.get(user.id)).username == "before@example.com"
        async with Browser(realm.server_url) as other:
            assert (await other.sign_in(realm.request(client.id).url, new)).status_code == 400
        code = await mailing.code_for(new)
        wrong = await browser.submit(check, {"code": "000000" if code != "000000" else "111111"})
        assert wrong.status_code == 400, describe(wrong)
        assert (await realm.api.users.get(user.id)).username == "before@example.com"
        changed = await browser.submit(wrong, {"code": code})
        assert heading(changed) == ACCOUNT and "Your email address is changed." in changed.text, describe(
            changed
        )
    stored = await realm.api.users.get(user.id)
    assert stored.username == new and stored.profile["email_verified"] is True
    async with Browser(realm.server_url) as other:
        assert (await other.sign_in(realm.request(client.id).url, "before@example.com")).status_code == 400
    tokens = await realm.tokens(client, new)
    claims = unverified_claims(tokens["id_token"])
    assert claims["email"] == new and claims["email_verified"] is True
    kinds = {
        e.type
        async for e in realm.admin.events.list_all(limit=100)
        if e.subject and e.subject["id"] == user.id
    }
    assert {"user.email.change-requested", "user.email.changed", "user.email.verified"} <= kinds


async def test_changing_to_an_address_another_account_holds_sends_nothing(
    mailing: Mailing, realm: Realm
) -> None:
    await realm.user("mine@example.com")
    await realm.user("theirs@example.com")
    async with Browser(realm.server_url) as browser:
        page = await open_portal(browser, realm, "mine@example.com")
        check = await browser.submit(page, {"email": "theirs@example.com"}, action_suffix="/account/email")
        assert heading(check) == CHECK, describe(check)
    await asyncio.sleep(1)
    assert mailing.mailbox.to("theirs@example.com") == []


async def test_a_changed_phone_number_is_proven_by_sms_first(mailing: Mailing, realm: Realm) -> None:
    user = await realm.user("phoned@example.com")
    client = await realm.client()
    number = "+14155550123"
    async with Browser(realm.server_url) as browser:
        page = await open_portal(browser, realm, "phoned@example.com")
        invalid = await browser.submit(page, {"phone": "not a number"}, action_suffix="/account/phone")
        assert invalid.status_code == 400, describe(invalid)
        check = await browser.submit(page, {"phone": "+1 (415) 555-0123"}, action_suffix="/account/phone")
        assert heading(check) == "Check your phone", describe(check)
        assert "phone_number" not in (await realm.api.users.get(user.id)).profile
        code = await mailing.text_code_for(number)
        wrong = await browser.submit(check, {"code": "000000" if code != "000000" else "111111"})
        assert wrong.status_code == 400, describe(wrong)
        changed = await browser.submit(wrong, {"code": code})
        assert "Your phone number is changed." in changed.text, describe(changed)
    profile = (await realm.api.users.get(user.id)).profile
    assert profile["phone_number"] == number and profile["phone_number_verified"] is True
    tokens = await realm.tokens(client, "phoned@example.com", scope="openid phone")
    claims = unverified_claims(tokens["id_token"])
    assert claims["phone_number"] == number and claims["phone_number_verified"] is True


async def test_sign_up_codes_stop_at_the_send_limit(mailing: Mailing, realm: Realm) -> None:
    client = await realm.client()
    email = "flooded@example.org"
    answers = []
    async with Browser(realm.server_url) as browser:
        for _ in range(4):
            page = await signup_page(browser, realm, client.id)
            answers.append(await browser.submit(page, {"email": email, "password": PASSWORD}))
    assert [a.status_code for a in answers] == [200, 200, 200, 429], [describe(a) for a in answers]
    assert answers[-1].headers["Retry-After"]
    await mailing.mail_to(email)
    await asyncio.sleep(1)
    assert len(mailing.mailbox.to(email)) == 3
