"""The sign-in strategy every upstream method type shares: a button on the login page (and, when
the method accepts sign-ups, on the sign-up page) that starts the trip upstream. The types differ
only in their ``provider``."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from authpi.i18n import _l
from authpi.oidc.routes import Routes
from authpi.oidc.signin.steps import Offer, Step
from authpi.oidc.signin.strategy import Strategy
from authpi.oidc.upstream.provider import Provider
from authpi.services.issuer_settings import portal_enabled
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.users import User

if TYPE_CHECKING:
    from authpi.oidc.signin.flow import Flow

# RFC 8176 has no value for a federated sign-in; "fed" is the one Microsoft Entra ID uses.
AMR = ("fed",)


def start_action(issuer_id: str, method_id: str) -> str:
    return f"/{issuer_id}/social/{method_id}/start"


def signup_open(flow: Flow, method: AuthMethod) -> bool:
    """Whether this method may create accounts: the sign-up and login portals are on, the method
    accepts sign-ups and the issuer's access mode lets anyone ask."""
    settings = flow.issuer.settings
    return (
        portal_enabled(settings, "signup")
        and portal_enabled(settings, "login")
        and method.enabled_signup
        and settings["access"]["mode"] in ("open", "approval")
    )


class UpstreamStrategy(Strategy):
    steps = frozenset({Step.FIRST_FACTOR, Step.REGISTRATION})
    amr = AMR
    # The start and callback routes are shared (oidc/upstream/routes.py), not per type.
    router: ClassVar[Routes] = Routes()
    provider: ClassVar[Provider]

    async def offer(
        self,
        step: Step,
        flow: Flow,
        method: AuthMethod,
        *,
        identifier: str | None = None,
        user: User | None = None,
    ) -> Offer | None:
        action = start_action(flow.issuer.id, method.id)
        if step is Step.FIRST_FACTOR and identifier is None and method.enabled_login:
            return Offer(
                _l("Continue with %(method)s").format(method=method.name),
                action,
                method.id,
                featured=method.featured,
            )
        if step is Step.REGISTRATION and signup_open(flow, method):
            return Offer(
                _l("Sign up with %(method)s").format(method=method.name),
                action,
                method.id,
                featured=method.featured,
            )
        return None
