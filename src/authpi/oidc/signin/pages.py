"""The sign-in pages that belong to no method: the identifier page and the method picker.

The identifier page lists what the issuer's methods offer before an identifier (social buttons,
passkeys) and a sign-up link when a method accepts sign-ups. After the identifier, the home realms
(``realms``: an organization's SSO for the email's domain) may take the sign-in elsewhere;
otherwise the methods that can prove it are asked: one is started at once, several are offered on
the picker. The same steps run whether or not an account exists for the identifier, so the pages
reveal nothing about it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import Text, _l
from authpi.oidc.context import runtime
from authpi.oidc.routes import Routes
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin import realms, registry
from authpi.oidc.signin.flow import SIGN_IN_UNAVAILABLE, Flow
from authpi.oidc.signin.steps import Offer, Step

router = Routes()
MAX_IDENTIFIER = 320


def no_method(request: Request, flow: Flow) -> Response:
    return flow.message(request, SIGN_IN_UNAVAILABLE, flows.NO_METHOD)


async def offers(
    flow: Flow, step: Step, *, identifier: str | None = None, signup: bool = False
) -> list[Offer]:
    found = []
    for method, strategy in await registry.enabled(flow.session, flow.issuer.id, step, signup=signup):
        offer = await strategy.offer(step, flow, method, identifier=identifier)
        if offer is not None:
            found.append(offer)
    return found


async def identifier_page(
    request: Request, flow: Flow, username: str = "", error: Text | None = None, status: int = 200
) -> Response:
    return flow.render(
        request,
        "login.html",
        status,
        client_name=flow.client.name,
        action=f"/{flow.issuer.id}/login",
        username=username,
        error=error,
        entries=await offers(flow, Step.FIRST_FACTOR),
        signups=await offers(flow, Step.REGISTRATION, signup=True),
    )


@router.get("/{issuer_id}/login")
async def login_page(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        flow = await flows.load_sign_in(request, session, issuer_id, post=False)
        if isinstance(flow, Response):
            return flow
        hint = request.query_params.get("login_hint", "")[:MAX_IDENTIFIER]
        return await identifier_page(request, flow, hint)


@router.post("/{issuer_id}/login")
async def login_identifier(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        flow = await flows.load_sign_in(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        username = flow.form.get("username", "").strip()[:MAX_IDENTIFIER]
        if not username:
            return await identifier_page(request, flow, error=_l("Enter your email or username."), status=400)
        # A home realm (an organization's SSO for the email's domain) takes the sign-in first.
        routed = await realms.route(request, flow, username)
        if routed is not None:
            return routed
        return await methods_for(request, flow, username)


@router.post("/{issuer_id}/login/others")
async def login_others(issuer_id: str, request: Request) -> Response:
    """ "Use another way to sign in" (the page of a home realm whose provider cannot be reached):
    the issuer's methods for the identifier, when every realm lets it skip them; otherwise the
    realms take it again (an ``sso_only`` organization's provider, or its page)."""
    async with runtime(request).sessions() as session:
        flow = await flows.load_sign_in(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        username = flow.form.get("username", "").strip()[:MAX_IDENTIFIER]
        if not username:
            return await identifier_page(request, flow, error=_l("Enter your email or username."), status=400)
        if not await realms.skippable(flow, username):
            routed = await realms.route(request, flow, username)
            if routed is not None:
                return routed
        return await methods_for(request, flow, username)


async def methods_for(request: Request, flow: Flow, username: str) -> Response:
    """The first-factor methods that can prove ``username``: one is started at once, several are
    offered on the picker."""
    methods = await registry.enabled(flow.session, flow.issuer.id, Step.FIRST_FACTOR)
    choices = [
        (method, strategy, offer)
        for method, strategy in methods
        if (offer := await strategy.offer(Step.FIRST_FACTOR, flow, method, identifier=username)) is not None
    ]
    if not choices:
        return no_method(request, flow)
    if len(choices) == 1:
        method, strategy, _ = choices[0]
        return await strategy.start(request, flow, method, identifier=username)
    return flow.render(
        request,
        "choose.html",
        action=f"/{flow.issuer.id}/login/choose",
        username=username,
        choices=[offer for _, _, offer in choices],
        restart_url=flow.page_url("login"),
    )


@router.post("/{issuer_id}/login/choose")
async def login_choose(issuer_id: str, request: Request) -> Response:
    """The method the user picked for the identifier they entered."""
    async with runtime(request).sessions() as session:
        flow = await flows.load_sign_in(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        username = flow.form.get("username", "").strip()[:MAX_IDENTIFIER]
        picked = await registry.method_of(session, flow.issuer.id, flow.form.get("method", ""))
        if not username or picked is None or not picked[0].enabled_login:
            return await identifier_page(request, flow, username, _l("Choose how to sign in."), 400)
        method, strategy = picked
        return await strategy.start(request, flow, method, identifier=username)
