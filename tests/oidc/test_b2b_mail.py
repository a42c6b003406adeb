"""The B2B journeys that go through the mailbox, against a server that sends real email to an
in-process SMTP server: an invitation accepted on the hosted page in Chromium (the link taken from
the received email), the invitation rules, and sign-up approval from sign-up to approved sign-in."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import ConflictError, NotFoundError, RateLimitError

from tests.conftest import BACKENDS, skip_without_postgres
from tests.core.message_outbox import Mailbox, smtp_server
from tests.harness import RunningServer, run_server
from tests.oidc.helpers import PASSWORD, Browser, Realm, callback_params, describe, heading, new_realm
from tests.oidc.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.oidc.test_lockout import sign_up

pytestmark = pytest.mark.anyio

MAIL_ENV = {
    "AUTHPI_ALLOW_PRIVATE_NETWORKS": "true",
    "AUTHPI_EMAIL_FROM": "Sign-in <noreply@b2b.example>",
    "AUTHPI_MESSAGE_POLL_INTERVAL": "0.2",
    "AUTHPI_MESSAGE_RETRY_DELAY": "0.2",
}


class Mailing:
    def __init__(self, server: RunningServer, mailbox: Mailbox) -> None:
        self.server, self.mailbox = server, mailbox

    async def mail_to(self, address: str, count: int = 1, seconds: float = 20) -> EmailMessage:
        """The ``count``-th email received for ``address``."""
        deadline = time.monotonic() + seconds
        while len(found := self.mailbox.to(address)) < count:
            assert time.monotonic() < deadline, f"no email #{count} to {address}"
            await asyncio.sleep(0.1)
        return found[count - 1]


@pytest.fixture(scope="module", params=BACKENDS)
def mailing(request: pytest.FixtureRequest) -> Iterator[Mailing]:
    skip_without_postgres(request.param)
    with (
        smtp_server() as (mailbox, port),
        run_server(request.param, {**MAIL_ENV, "AUTHPI_SMTP_URL": f"smtp://127.0.0.1:{port}"}) as running,
    ):
        yield Mailing(running, mailbox)


@pytest.fixture
async def mail_admin(mailing: Mailing) -> AsyncIterator[AuthPIAdmin]:
    async with AuthPIAdmin(
        api_key=mailing.server.api_key, base_url=mailing.server.url, retries=False
    ) as admin:
        yield admin


def text_of(mail: EmailMessage) -> str:
    body = mail.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def invitation_link(mail: EmailMessage) -> str:
    found = re.search(r"https?://\S+/invitations/\S+", text_of(mail))
    assert found, text_of(mail)
    return found.group(0)


async def invite(realm: Realm, org_id: str, email: str, **extra: object) -> str:
    invitation = await realm.api.organization(org_id).invitations.create(
        {"email_invited": email, "scopes": ["member", "projects:read"], "inviter": {"name": "Ada"}, **extra}
    )
    return invitation.id


async def test_invitation_accepted_in_chromium_from_the_emailed_link(
    mailing: Mailing, mail_admin: AuthPIAdmin, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}")
    from playwright.async_api import async_playwright

    realm = await new_realm(mail_admin, mailing.server, signup=True)
    await mail_admin.issuers.update(realm.id, {"settings": {"access": {"mode": "invite_only"}}})
    org = await realm.api.organizations.create({"name": "Acme"})
    email = "newcomer@example.com"
    invitation_id = await invite(realm, org.id, "NewComer@Example.com", message="Welcome to the team")
    created = await realm.api.organization(org.id).invitations.get(invitation_id)
    assert created.email_invited == email and created.status == "pending" and created.last_email_sent_at

    mail = await mailing.mail_to(email)
    assert "Acme" in str(mail["Subject"]) and "Welcome to the team" in text_of(mail)
    link = invitation_link(mail)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await chromium.new_page()
            page.set_default_timeout(20_000)
            await page.goto(link)
            assert await page.get_by_role("heading").inner_text() == "Join Acme"
            await page.get_by_role("button", name="Sign in or create an account to accept").click()
            # No account yet: sign up (open to the invited address on this invite-only issuer).
            await page.get_by_role("link", name="Create an account").click()
            await page.get_by_label("Email").fill(email)
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Create account").click()
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_url(link)
            await page.screenshot(path=str(tmp_path / "invitation.png"), full_page=True)
            await page.get_by_role("button", name="Accept the invitation").click()
            assert await page.get_by_role("heading").inner_text() == "Welcome aboard"
            # The link is spent: opening it again says so.
            await page.goto(link)
            assert await page.get_by_role("heading").inner_text() == "Invitation unavailable"
        finally:
            await chromium.close()

    [user] = [u for u in (await realm.api.users.list()).data]
    [member] = (await realm.api.organization(org.id).members.list()).data
    assert member.member_id == user.user_id and member.scopes == ["member", "projects:read"]
    accepted = await realm.api.organization(org.id).invitations.get(invitation_id)
    assert accepted.status == "accepted" and accepted.accepted_at and accepted.user_id_invited == user.user_id


async def test_invitation_rules(mailing: Mailing, mail_admin: AuthPIAdmin) -> None:
    realm = await new_realm(mail_admin, mailing.server)
    org = realm.api.organization((await realm.api.organizations.create({"name": "Rules"})).id)
    email = "rules@example.com"
    await realm.user(email)
    first = await invite(realm, org._org_id, email)
    with pytest.raises(ConflictError):  # one pending invitation per address
        await invite(realm, org._org_id, email)
    with pytest.raises(RateLimitError):  # resend cooldown
        await org.invitations.resend(first)
    updated = await org.invitations.update(first, {"scopes": ["admin"], "user_title": "Lead"})
    assert updated.scopes == ["admin"] and updated.user_title == "Lead"
    old_link = invitation_link(await mailing.mail_to(email))
    await org.invitations.revoke(first)
    assert (await org.invitations.get(first)).status == "revoked"
    assert [i.id for i in (await org.invitations.list(status="revoked")).data] == [first]
    with pytest.raises(ConflictError):
        await org.invitations.revoke(first)

    async with Browser(mailing.server.url) as browser:
        revoked = await browser.get(old_link)
        assert revoked.status_code == 410, describe(revoked)

        # Declined: the link then stops working; nobody joined.
        second = await invite(realm, org._org_id, email)
        link = invitation_link(await mailing.mail_to(email, 2))
        page = await browser.get(link)
        declined = await browser.submit(page, {"choice": "decline"})
        assert declined.status_code == 200, describe(declined)
        assert (await org.invitations.get(second)).status == "declined"
        assert (await browser.get(link)).status_code == 410
        assert (await org.members.list()).data == []

        # Expired (moved into the past in the database): unusable, listed as expired.
        third = await invite(realm, org._org_id, email)
        link = invitation_link(await mailing.mail_to(email, 3))
        from tests.db_query import rows

        await rows(mailing.server, "UPDATE organization_invitations SET expires_at = 1 WHERE id = ?", third)
        assert (await browser.get(link)).status_code == 410
        assert (await org.invitations.get(third)).status == "expired"
        assert [i.id for i in (await org.invitations.list(status="expired")).data] == [third]

    # Accepted by the signed-in invitee exactly once, even when submitted twice at once.
    fourth = await invite(realm, org._org_id, email)
    link = invitation_link(await mailing.mail_to(email, 4))
    client = await realm.client()
    async with Browser(mailing.server.url) as browser:
        await browser.visit(realm.request(client.id).url, email)
        page = await browser.get(link)
        assert "Accept the invitation" in page.text, describe(page)
        outcomes = await asyncio.gather(*(browser.submit(page, {"choice": "accept"}) for _ in range(2)))
        assert sorted(o.status_code for o in outcomes) == [200, 410], [describe(o) for o in outcomes]
    [member] = (await org.members.list()).data
    assert member.scopes == ["member", "projects:read"]
    assert (await org.invitations.get(fourth)).status == "accepted"
    with pytest.raises(NotFoundError):
        await realm.api.organization("org_unknown").invitations.list()


async def test_approval_from_sign_up_to_approved_sign_in(mailing: Mailing, mail_admin: AuthPIAdmin) -> None:
    realm = await new_realm(mail_admin, mailing.server, signup=True)
    await mail_admin.issuers.update(realm.id, {"settings": {"access": {"mode": "approval"}}})
    client = await realm.client()
    email, rejected_email = "waiting@example.com", "rejected@example.com"
    for address in (email, rejected_email):
        signed_up = await sign_up(realm, client.id, address, PASSWORD)
        assert signed_up.status_code == 200 and "approved" in signed_up.text, describe(signed_up)

    approvals = realm.api.approvals
    pending = (await approvals.list()).data
    assert [p.status for p in pending] == ["pending_approval"] * 2  # oldest first
    waiting_id, rejected_id = pending[0].user_id, pending[1].user_id
    assert (await approvals.get(waiting_id)).status == "pending_approval"

    # Pending: the sign-in stops at a waiting page, no code, no session.
    async with Browser(mailing.server.url) as browser:
        page = await browser.sign_in(realm.request(client.id).url, email)
        assert page.status_code == 403 and heading(page) == "Waiting for approval", describe(page)
        assert browser.session_cookie is None

    approved = await approvals.update(waiting_id, {"status": "active"})
    assert approved.status == "active" and approved.approval and approved.approval["status"] == "approved"
    rejected = await approvals.update(rejected_id, {"decision": "reject", "status_reason": "unknown company"})
    assert rejected.status == "blocked"
    with pytest.raises(ConflictError):
        await approvals.update(waiting_id, {"status": "blocked"})
    assert (await approvals.list()).data == []
    assert "approved" in str((await mailing.mail_to(email))["Subject"])
    assert "unknown company" in text_of(await mailing.mail_to(rejected_email))

    async with Browser(mailing.server.url) as browser:
        done = await browser.visit(realm.request(client.id).url, email)
        assert "code" in callback_params(done), describe(done)
    kinds = {
        e.type
        async for e in mail_admin.events.list_all(
            issuer_id=realm.id, event_types="user.approval.approved,user.approval.rejected"
        )
    }
    assert kinds == {"user.approval.approved", "user.approval.rejected"}
