"""Sign-in through an organization's SSO connection (issue 13 item 6, idp-api §C.1).

The connection is an OpenID provider described by the organization's ``sso`` block; it travels
the same machinery as an ``oidc`` auth method (``routes.go_upstream`` / ``routes.answer``, the
``oidc`` method's provider: discovery, PKCE, nonce, ID-token checks). Home-realm discovery
(``oidc/signin/realms.py``) starts the trip; the provider comes back to
``GET /{issuer_id}/sso/{org_id}/callback`` (one per organization: the URL its IT registers).

What the identity signs in (``sign_in_member``):

* A subject already linked to this organization's connection signs in its user.
* Otherwise the email must be verified by the provider, and its domain one the organization
  verified by DNS: an organization's provider vouches only for addresses of its own domains.
* That address's existing user is linked (``user.sso.linked``): the organization proved it owns
  the domain, and its provider that the person holds the address. Nobody is matched otherwise.
* No user has it: one is created (``user.created``, ``user.sso.provisioned``).
* Every sign-in through the connection makes the user an active member of the organization with
  its ``default_member_scopes`` if it is not one (``organization.membership.created``), within
  ``max_members``; unless an administrator removed that user from it (DELETE of the membership):
  the removal sticks and the sign-in is refused, until the API or an invitation adds them back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc.routes import Routes
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin.flow import Flow
from authpi.oidc.signin.methods.oidc import OidcProvider
from authpi.oidc.upstream import routes
from authpi.oidc.upstream.connection import Connection
from authpi.oidc.upstream.provider import Identity
from authpi.oidc.upstream.strategy import AMR
from authpi.runtime import Runtime
from authpi.services import organizations, sso_connections, upstream_identities
from authpi.services.upstream_identities import Found
from authpi.storage.tables.organizations import Organization
from authpi.storage.tables.upstream import UpstreamRequest
from authpi.storage.tables.users import User

# What an SSO sign-in records as its factor's method (its ``method_id`` is the organization's ID).
FACTOR = "sso"
PROVIDER = OidcProvider()
router = Routes()


def connection(rt: Runtime, org: Organization, identifier: str = "") -> Connection:
    """``org``'s SSO connection for one sign-in (of ``identifier``, the address that led to it)."""
    sso = org.sso or {}
    settings: dict[str, Any] = {k: sso[k] for k in ("issuer_url", "client_id", "scopes") if k in sso}
    settings.setdefault("scopes", ["openid", "email", "profile"])
    secrets = {"client_secret": sso_connections.client_secret(rt.secretbox, org)}
    redirect_to = sso_connections.redirect_uri(rt.settings.public_url_base, org.issuer_id, org.id)

    async def sign_in(request: Request, flow: Flow, identity: Identity, tokens: dict[str, Any]) -> Response:
        return await sign_in_member(request, flow, org, identity)

    async def unreachable(request: Request, flow: Flow, reason: str) -> Response:
        return await unreachable_page(request, flow, org, identifier, reason)

    ctx = routes.context(rt, settings, secrets, redirect_to)
    return Connection(org.name or org.id, PROVIDER, ctx, sign_in, org_id=org.id, unreachable=unreachable)


async def usable(flow: Flow, org_id: str | None) -> Organization | None:
    """The issuer's organization ``org_id`` while its SSO connection is on."""
    if org_id is None:
        return None
    org: Organization | None = await flow.session.scalar(
        select(Organization).where(
            Organization.id == org_id,
            Organization.issuer_id == flow.issuer.id,
            Organization.status == "active",
            Organization.sso_enabled.is_(True),
        )
    )
    return org if org is not None and sso_connections.ready(org) else None


async def go(request: Request, flow: Flow, org: Organization, identifier: str) -> Response:
    """Send the browser to ``org``'s provider (home-realm discovery of ``identifier``)."""
    return await routes.go_upstream(request, flow, connection(flow.rt, org, identifier))


async def unreachable_page(
    request: Request, flow: Flow, org: Organization, identifier: str, reason: str
) -> Response:
    """``org``'s provider cannot be reached (its discovery failed or timed out). Without
    ``sso_only`` the page offers the issuer's other methods for ``identifier``; with it, it says
    that only the organization's provider signs its members in."""
    name = org.name or org.id
    heading = _l("%(org)s's sign-in cannot be reached").format(org=name)
    if org.sso_only:
        text = _l(
            "%(org)s signs its members in through its own single sign-on, which cannot be reached "
            "right now (%(reason)s). Try again later, or tell %(org)s's administrator."
        ).format(org=name, reason=reason)
        others = None
    else:
        text = _l(
            "%(org)s's single sign-on cannot be reached right now (%(reason)s). Try again later, "
            "or use another way to sign in."
        ).format(org=name, reason=reason)
        others = f"/{flow.issuer.id}/login/others"
    return flow.render(
        request,
        "sso_unavailable.html",
        502,
        heading=heading,
        message=text,
        others_action=others,
        username=identifier,
        restart_url=flow.page_url("login"),
    )


async def _organization_of_request(flow: Flow, row: UpstreamRequest) -> Connection | None:
    org = await usable(flow, row.org_id)
    return connection(flow.rt, org) if org is not None else None


@router.get("/{issuer_id}/sso/{org_id}/callback")
async def callback(issuer_id: str, request: Request) -> Response:
    return await routes.answer(request, issuer_id, _organization_of_request)


def _refused(request: Request, flow: Flow, org: Organization, text: Any, status: int = 403) -> Response:
    heading = _l("Cannot sign in with %(org)s").format(org=org.name or org.id)
    return flow.message(request, heading, text, status)


async def sign_in_member(request: Request, flow: Flow, org: Organization, identity: Identity) -> Response:
    session, box = flow.session, flow.rt.secretbox
    factor = flows.factor(FACTOR, org.id, AMR)
    email = identity.email if identity.email_verified else None
    row = await upstream_identities.linked_to_org(session, org.id, identity.subject)
    user: User | None
    if row is not None:
        user = await session.get(User, row.user_id)
        if user is None or user.issuer_id != flow.issuer.id or user.deleted_at is not None:
            return flow.expired(request)
        upstream_identities.used(row, box, email, None)
    else:
        if email is None:
            await session.commit()
            text = _l(
                "Your organization's sign-in did not vouch for your email address, so it cannot sign "
                "you in here. Ask your organization's administrator."
            )
            return _refused(request, flow, org, text)
        if not await sso_connections.verified_domain(session, org, email):
            await session.commit()
            text = _l("Your email address is not in a domain of this organization.")
            return _refused(request, flow, org, text)
        found = Found(None, identity.subject, email, True, identity.profile(), org_id=org.id)
        user = await upstream_identities.user_by_email(session, flow.issuer.id, email)
        try:
            provisioned = user is None
            if user is None:
                user = await upstream_identities.provision(session, flow.issuer, found)
                await session.flush()  # the user before its link (no ORM relationship orders them)
            await upstream_identities.link(
                session, box, flow.issuer, user, found, None, provisioned=provisioned
            )
            await session.flush()
        except IntegrityError:
            # A concurrent sign-in created the same account or link first.
            await session.rollback()
            return flow.message(
                request, _l("Please try again"), _l("This account was just created. Sign in again."), 409
            )
    if user.status != "active":
        await session.commit()
        return flow.message(request, _l("Cannot sign in"), flows.inactive_text(user.status), 403)
    joined = await organizations.join(session, org, user.id)
    if joined == organizations.FULL:
        await session.commit()
        text = _l("This organization has no room for more members. Ask its administrator.")
        return _refused(request, flow, org, text)
    if joined == organizations.REMOVED:
        await session.commit()
        text = _l(
            "An administrator removed you from this organization, so its single sign-on no longer "
            "signs you in. Ask them to add you again."
        )
        return _refused(request, flow, org, text)
    return await flow.passed(request, user, factor)
