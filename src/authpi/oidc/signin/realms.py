"""Home realms: where an identifier's sign-in belongs before any method is asked (issue 13 item 6).

A realm looks at the identifier entered on the login page and may take the sign-in elsewhere
(``route``), and may refuse a first factor proven by some other way for a user it owns
(``refusal``). The identifier step asks every realm before it asks the methods, and
``Flow.passed`` asks them before a first factor counts, so neither names a method.

The one realm so far is an organization's SSO connection: an email whose domain an organization of
the issuer verified, with its connection enabled, goes straight to that organization's provider
(no password page). The decision reads the domain only, never whether an account exists, so known
and unknown addresses behave the same. With ``sso_only``, the users of those domains can sign in
through that connection only (not with a password, a code, a passkey or another provider).

Sign-up follows the same rule: every sign-up method asks ``route`` with the address it is given
(``Flow.realm``) before it sends a code, creates a credential or provisions an account, so an
address of such a domain is created by the organization's provider (just-in-time), never by a
password, a code, a passkey or a social button that would bypass it.

When the realm's provider cannot be reached, its page may offer "use another way to sign in"
(``POST /{issuer_id}/login/others``): the methods for the identifier, without the realms that
``may_skip`` it (an organization without ``sso_only``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import Text, _l
from authpi.oidc.signin.steps import Factor
from authpi.services import sso_connections
from authpi.storage.tables.users import User

if TYPE_CHECKING:
    from authpi.oidc.signin.flow import Flow


class Realm:
    async def route(self, request: Request, flow: Flow, identifier: str) -> Response | None:
        """Where the sign-in of ``identifier`` goes instead of the methods, if anywhere."""
        return None

    async def refusal(self, flow: Flow, user: User, factor: Factor) -> Text | None:
        """Why ``factor`` cannot be ``user``'s first factor, if it cannot."""
        return None

    async def may_skip(self, flow: Flow, identifier: str) -> bool:
        """Whether ``identifier`` may sign in with the issuer's methods instead of this realm
        (asked when the user picks "use another way to sign in")."""
        return True


class OrganizationSso(Realm):
    async def route(self, request: Request, flow: Flow, identifier: str) -> Response | None:
        from authpi.oidc.upstream import sso  # the upstream routes import the sign-in flow

        org = await sso_connections.for_email(flow.session, flow.issuer.id, identifier)
        return await sso.go(request, flow, org, identifier) if org is not None else None

    async def refusal(self, flow: Flow, user: User, factor: Factor) -> Text | None:
        from authpi.oidc.upstream import sso

        if user.username_type != "email":
            return None
        org = await sso_connections.for_email(flow.session, flow.issuer.id, user.username, sso_only=True)
        if org is None or (factor.method == sso.FACTOR and factor.method_id == org.id):
            return None
        return _l(
            "%(org)s signs its members in through its own single sign-on. Enter your email address "
            "on the sign-in page to continue there."
        ).format(org=org.name or org.id)

    async def may_skip(self, flow: Flow, identifier: str) -> bool:
        # Without sso_only the organization accepts its users' other methods (the provider being
        # down is when it matters); with it, nothing but its provider signs them in.
        only = await sso_connections.for_email(flow.session, flow.issuer.id, identifier, sso_only=True)
        return only is None


REALMS: tuple[Realm, ...] = (OrganizationSso(),)


async def route(request: Request, flow: Flow, identifier: str) -> Response | None:
    for realm in REALMS:
        routed = await realm.route(request, flow, identifier)
        if routed is not None:
            return routed
    return None


async def skippable(flow: Flow, identifier: str) -> bool:
    """Whether every realm lets ``identifier`` use the issuer's methods instead."""
    for realm in REALMS:
        if not await realm.may_skip(flow, identifier):
            return False
    return True


async def refusal(flow: Flow, user: User, factor: Factor) -> Text | None:
    for realm in REALMS:
        refused = await realm.refusal(flow, user, factor)
        if refused is not None:
            return refused
    return None
