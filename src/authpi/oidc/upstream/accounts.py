"""Which user an upstream identity signs in (issue 12, §C.1 of the IdP notes).

* A linked identity signs in its user.
* Otherwise the email must be verified by the provider, or nothing happens: unverified emails
  never link and never create accounts.
* A verified email of a domain an organization's SSO connection serves goes to that
  organization's provider (``Flow.realm``): it is neither linked nor created through this method.
* A verified email that names an existing user raises ``account_linking_required``: the page asks
  the user to sign in to that account with its own first factor, in this browser; only then is
  the identity linked (``Flow.passed``). Never silently.
* A verified email that names nobody creates the user when the method accepts sign-ups.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin.flow import Flow, Progress
from authpi.oidc.signin.strategy import Strategy
from authpi.oidc.upstream.provider import Identity
from authpi.oidc.upstream.strategy import signup_open
from authpi.services import upstream_identities
from authpi.services.upstream_identities import Found
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.users import User

LINKING_REQUIRED = "account_linking_required"


def _cannot_sign_in(request: Request, flow: Flow, user: User) -> Response:
    return flow.message(request, _l("Cannot sign in"), flows.inactive_text(user.status), 403)


async def sign_in(
    request: Request,
    flow: Flow,
    method: AuthMethod,
    strategy: Strategy,
    identity: Identity,
    tokens: dict[str, Any],
) -> Response:
    session, box = flow.session, flow.rt.secretbox
    kept = tokens if method.settings.get("store_tokens") is True else None
    factor = flows.factor(method.method, method.id, strategy.amr)
    email = identity.email if identity.email_verified else None
    found = Found(method.id, identity.subject, email, identity.email_verified, identity.profile())

    row = await upstream_identities.linked(session, method.id, identity.subject)
    if row is not None:
        user = await session.get(User, row.user_id)
        if user is None or user.issuer_id != flow.issuer.id or user.deleted_at is not None:
            return flow.expired(request)
        if user.status != "active":
            await session.commit()
            return _cannot_sign_in(request, flow, user)
        upstream_identities.used(row, box, email, kept)
        return await flow.passed(request, user, factor)

    if email is None:
        await session.commit()
        text = _l(
            "Your %(method)s account has no verified email address, so it cannot sign you in "
            "here. Verify your email address at %(method)s, or sign in another way."
        ).format(method=method.name)
        return flow.message(request, _l("Email address not verified"), text, 403)

    # An address of an organization's SSO domain belongs to that organization's provider: it is
    # neither linked nor created here (decided on the domain alone, account or not).
    routed = await flow.realm(request, email)
    if routed is not None:
        return routed
    existing = await upstream_identities.user_by_email(session, flow.issuer.id, email)
    if existing is not None:
        # account_linking_required: remember the identity for this browser until the account's
        # own first factor is proven (a fresh start: nothing proven so far counts for the link).
        flow.progress = Progress(browser=flow.browser())
        flow.progress.link = upstream_identities.pending_link(box, existing, found, kept)
        await flow.save()
        await session.commit()
        login_url = flow.page_url("login") + "&login_hint=" + quote(existing.username, safe="")
        return flow.render(
            request,
            "upstream_link.html",
            409,
            provider=method.name,
            email=existing.username,
            login_url=login_url,
            error_code=LINKING_REQUIRED,
            decline_action=f"/{flow.issuer.id}/social/decline",
        )

    if not signup_open(flow, method) or not upstream_identities.email_allowed(flow.issuer, email):
        await session.commit()
        text = _l(
            "No account here uses the email address of your %(method)s account, and signing up is closed."
        ).format(method=method.name)
        return flow.message(request, _l("No account"), text, 403)
    try:
        user = await upstream_identities.provision(session, flow.issuer, found)
        await session.flush()  # the user before its link (no ORM relationship orders them)
        await upstream_identities.link(session, box, flow.issuer, user, found, kept, provisioned=True)
        await session.flush()
    except IntegrityError:
        # A concurrent sign-in created the same account or link first.
        await session.rollback()
        return flow.message(
            request, _l("Please try again"), _l("This account was just created. Sign in again."), 409
        )
    if user.status != "active":
        await session.commit()
        text = _l("Your request has been received. You can sign in once it has been approved.")
        return flow.message(request, _l("Thanks for signing up"), text, 200)
    return await flow.passed(request, user, factor)
