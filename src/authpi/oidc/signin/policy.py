"""What a sign-in needs after each proven factor (decision 29, idp-api §C.2).

A second factor is asked when the issuer requires one for everyone (``settings.security.mfa.
required``) or an organization requires one of its members (``settings.enforce_2fa``), when the user
has one set up, or when the request asks for a multi-factor sign-in (``acr_values``). A user who
must give one but has none enrolls one first, if any enabled method can be set up at sign-in. A
requested (not required) second factor the user cannot give is not forced: ``acr_values`` are
voluntary, and the ID token's ``acr`` says what was achieved.

The second factors are what the enabled strategies serving ``Step.SECOND_FACTOR`` offer this user,
except fallbacks (backup codes), which stand in for another factor but never cause the question on
their own, and except methods already used in this sign-in (two proofs of one method are not two
factors). Nothing here names a method.

A trusted device (``services/trusted_devices``) stands in for the second factor of its user: the
browser's device cookie matching a live device of that user skips the question, unless the request
itself asks for a multi-factor sign-in (``acr_values``: then only a second factor will do) or the
user has no second factor any more (a required one is then enrolled as for anyone). The sign-in
stays single-factor in ``amr``/``acr``; the session records the device instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from authpi.i18n import _l
from authpi.oidc import acr
from authpi.oidc.signin import registry
from authpi.oidc.signin.steps import Offer, Step
from authpi.oidc.signin.strategy import Strategy
from authpi.services import organizations, trusted_devices
from authpi.services.issuer_settings import mfa_required
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.users import User

if TYPE_CHECKING:
    from authpi.oidc.signin.flow import Flow


class Decision(StrEnum):
    DONE = "done"  # the factors proven suffice
    SECOND_FACTOR = "second_factor"  # ask one of the user's second factors (/mfa)
    ENROLL = "enroll"  # the user must set a second factor up first (/mfa/enroll)
    UNAVAILABLE = "unavailable"  # required, but the user has none and none can be set up


PAGES = {Decision.SECOND_FACTOR: "mfa", Decision.ENROLL: "mfa/enroll"}
UNAVAILABLE_TEXT = _l(
    "This application requires a second factor, but none is available to set up. "
    "Contact the application's administrator."
)


@dataclass(frozen=True)
class Choice:
    method: AuthMethod
    strategy: Strategy
    offer: Offer


async def choices(flow: Flow, user: User, step: Step) -> list[Choice]:
    """What the enabled methods offer ``user`` for ``step`` (second factor or enrollment): the
    methods not yet used in this sign-in, fallbacks last."""
    used = {factor["method"] for factor in flow.progress.factors}
    found: list[Choice] = []
    for method, strategy in await registry.enabled(flow.session, flow.issuer.id, step):
        if method.method in used:
            continue
        if step is Step.SECOND_FACTOR and not await strategy.enrolled(flow, method, user):
            continue
        offer = await strategy.offer(step, flow, method, user=user)
        if offer is not None:
            found.append(Choice(method, strategy, offer))
    return sorted(found, key=lambda choice: choice.strategy.fallback)


async def trusted_device(flow: Flow, user: User) -> bool:
    """Whether this browser is a live trusted device of ``user`` (kept on the flow for ``finish``)."""
    if flow.trusted_device is None or flow.trusted_device.user_id != user.id:
        flow.trusted_device = None
        if trusted_devices.days(flow.issuer) > 0:
            flow.trusted_device = await trusted_devices.find(
                flow.session, flow.issuer.id, user.id, flow.device_cookie
            )
    return flow.trusted_device is not None


def multi_factor(flow: Flow) -> bool:
    return "mfa" in flow.progress.amr()


async def decide(flow: Flow, user: User) -> Decision:
    if not flow.progress.factors or multi_factor(flow):
        return Decision.DONE
    # An active organization of the user with ``settings.enforce_2fa`` requires it as well.
    required = mfa_required(flow.issuer.settings) or await organizations.enforces_mfa(flow.session, user.id)
    requested = acr.asks_mfa(flow.params.acr_values)
    second = [c for c in await choices(flow, user, Step.SECOND_FACTOR) if not c.strategy.fallback]
    if second:
        if not requested and await trusted_device(flow, user):
            return Decision.DONE
        return Decision.SECOND_FACTOR
    if not (required or requested):
        return Decision.DONE
    if await choices(flow, user, Step.ENROLLMENT):
        return Decision.ENROLL
    return Decision.UNAVAILABLE if required else Decision.DONE
