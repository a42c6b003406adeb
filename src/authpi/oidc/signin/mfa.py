"""The second-factor pages that belong to no method: ``/mfa`` (decision 21) and ``/mfa/enroll``.

``/mfa`` starts the user's first second factor at once (their primary one first, backup codes
last) with a link to the others; ``/mfa/enroll`` does the same with the methods that can be set
up. Both continue the progress this browser made (``Flow.load`` refuses any other browser). A
live single-factor session arriving with a request for a multi-factor sign-in (step-up) starts
here too: its first factor is taken from the session, so only the second one is asked.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import _l
from authpi.oidc import acr, authorization
from authpi.oidc.context import runtime
from authpi.oidc.pages import proceed, redirect
from authpi.oidc.routes import Routes
from authpi.oidc.routes.authorize import current_sign_in
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin import policy
from authpi.oidc.signin.flow import Flow, Progress
from authpi.oidc.signin.policy import Choice, Decision
from authpi.oidc.signin.steps import Step
from authpi.storage.tables.users import User

router = Routes()
STEPS = {Decision.SECOND_FACTOR: Step.SECOND_FACTOR, Decision.ENROLL: Step.ENROLLMENT}


async def _step_up(request: Request, flow: Flow) -> User | None:
    """Seed an empty progress from the browser's live session (its first factor), so a request
    asking for a multi-factor sign-in (``acr_values``) only asks for the second factor. Only for
    such a request, and only when the session may stand for it (no ``prompt=login``, ``max_age``
    passed): anything else starts at ``/login``."""
    signed_in = await current_sign_in(request, flow.session, flow.issuer)
    if signed_in is None or not acr.asks_mfa(flow.params.acr_values):
        return None
    op, user = signed_in
    if authorization.needs_login(flow.params, op):
        # prompt=login, max_age or another user's id_token_hint: the whole sign-in, from /login.
        return None
    authentication = op.authentication or {}
    flow.progress = Progress(
        user.id,
        flow.browser(),
        [
            {
                "method": authentication.get("method"),
                "method_id": "",
                "amr": list(authentication.get("amr") or []),
                "at": authentication.get("authenticated_at") or op.created_at,
            }
        ],
    )
    return user


async def _load(
    request: Request, session: AsyncSession, issuer_id: str, *, post: bool
) -> tuple[Flow, User, bool] | Response:
    flow = await flows.load_sign_in(request, session, issuer_id, post=post)
    if isinstance(flow, Response):
        return flow
    stepping_up = False
    user = await flow.pending_user()
    if user is None and not flow.progress.factors:
        user = await _step_up(request, flow)
        stepping_up = user is not None
    if user is None:
        return flow.expired(request)
    return flow, user, stepping_up


def others_url(flow: Flow, page: str, found: list[Choice]) -> str | None:
    return flow.page_url(page) + "&choose=1" if len(found) > 1 else None


async def _page(request: Request, issuer_id: str, expected: Decision) -> Response:
    async with runtime(request).sessions() as session:
        loaded = await _load(request, session, issuer_id, post=False)
        if isinstance(loaded, Response):
            return loaded
        flow, user, stepping_up = loaded
        decision = await policy.decide(flow, user)
        if decision is Decision.DONE and stepping_up:
            # Nothing more can be asked of this session's user: it stands as it is.
            signed_in = await current_sign_in(request, session, flow.issuer)
            assert signed_in is not None
            return await proceed(
                request, flow.rt, session, flow.issuer, flow.client, flow.params, flow.request_id, *signed_in
            )
        if decision is not expected:
            if decision in policy.PAGES:
                return redirect(flow.page_url(policy.PAGES[decision]))
            return await flow.advance(request, user)
        if stepping_up:
            await flow.save()
            await session.commit()
        found = await policy.choices(flow, user, STEPS[decision])
        page = policy.PAGES[decision]
        if request.query_params.get("choose") and len(found) > 1:
            return flow.render(
                request,
                "mfa_choose.html",
                heading=_l("Choose how to verify")
                if expected is Decision.SECOND_FACTOR
                else _l("Add a second factor"),
                action=f"/{flow.issuer.id}/{page}/choose",
                choices=[choice.offer for choice in found],
            )
        flow.others_url = others_url(flow, page, found)
        first = found[0]
        return await first.strategy.start(request, flow, first.method)


async def _choose(request: Request, issuer_id: str, expected: Decision) -> Response:
    async with runtime(request).sessions() as session:
        loaded = await _load(request, session, issuer_id, post=True)
        if isinstance(loaded, Response):
            return loaded
        flow, user, _ = loaded
        if await policy.decide(flow, user) is not expected:
            return flow.expired(request)
        found = await policy.choices(flow, user, STEPS[expected])
        picked = [c for c in found if c.method.id == flow.form.get("method", "")]
        if not picked:
            return redirect(flow.page_url(policy.PAGES[expected]) + "&choose=1")
        flow.others_url = others_url(flow, policy.PAGES[expected], found)
        return await picked[0].strategy.start(request, flow, picked[0].method)


@router.get("/{issuer_id}/mfa")
async def mfa_page(issuer_id: str, request: Request) -> Response:
    return await _page(request, issuer_id, Decision.SECOND_FACTOR)


@router.post("/{issuer_id}/mfa/choose")
async def mfa_choose(issuer_id: str, request: Request) -> Response:
    return await _choose(request, issuer_id, Decision.SECOND_FACTOR)


@router.get("/{issuer_id}/mfa/enroll")
async def enroll_page(issuer_id: str, request: Request) -> Response:
    return await _page(request, issuer_id, Decision.ENROLL)


@router.post("/{issuer_id}/mfa/enroll/choose")
async def enroll_choose(issuer_id: str, request: Request) -> Response:
    return await _choose(request, issuer_id, Decision.ENROLL)


@router.post("/{issuer_id}/mfa/continue")
async def mfa_continue(issuer_id: str, request: Request) -> Response:
    """After a page a method showed once its factor was proven (new backup codes, a warning)."""
    async with runtime(request).sessions() as session:
        flow = await flows.load(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        user = await flow.pending_user()
        if user is None:
            return flow.expired(request)
        return await flow.advance(request, user)
