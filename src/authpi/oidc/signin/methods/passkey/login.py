"""Signing in with a passkey: the ceremony page, the conditional-UI options and the verification.

``POST /{issuer_id}/passkey/login`` opens the ceremony for a discoverable credential (the "Sign in
with a passkey" entry); ``…/passkey/login/options`` gives the same options as JSON to the
identifier page's autofill (conditional UI); ``…/passkey/second-factor`` opens it for the signed-in
user's own credentials; ``…/passkey/verify`` checks the answer and passes the factor to the flow.

After an identifier the ceremony stays discoverable: listing that account's credentials would tell
anyone which identifiers have passkeys. The identifier only narrows whose credential is accepted.
Passkeys have no lockout (a signature cannot be guessed); the pages are rate-limited per address.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authpi.i18n import LazyText, Text, _l
from authpi.observability import metrics
from authpi.oidc.context import runtime
from authpi.oidc.pages import EXPIRED as SIGN_IN_EXPIRED
from authpi.oidc.pages import SECURITY_HEADERS, rate_limited
from authpi.oidc.pages import SIGN_IN_EXPIRED as EXPIRED_HEADING
from authpi.oidc.routes import Routes
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin.flow import SIGN_IN_UNAVAILABLE, Flow
from authpi.oidc.signin.methods.passkey import ceremonies, challenges, credentials
from authpi.oidc.signin.methods.passkey.ceremonies import CeremonyFailed, VerifiedAssertion
from authpi.oidc.signin.steps import Step
from authpi.services import events, users
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.passkey_challenges import PasskeyChallenge
from authpi.storage.tables.users import User

router = Routes()
NOT_VERIFIED = _l("That passkey could not be verified. Try again, or use another way to sign in.")
UNKNOWN = _l("This passkey is not registered for this application. Use another way to sign in.")
EXPIRED = _l("This passkey request expired or was already used. Start again.")
REQUEST_EXPIRED = _l("Passkey request expired")
NOT_ENABLED = _l("Passkey sign-in is not enabled.")
RATE_LIMITED = flows.TOO_MANY_SIGN_INS
SIGN_IN_WITH_PASSKEY = _l("Sign in with a passkey")
_HEADINGS = {Step.FIRST_FACTOR: SIGN_IN_WITH_PASSKEY, Step.SECOND_FACTOR: _l("Confirm it's you")}
_INSTRUCTIONS = {
    Step.FIRST_FACTOR: _l("Use the passkey saved on this device, your phone or your security key."),
    Step.SECOND_FACTOR: _l("Use one of your passkeys to confirm this sign-in."),
}


def script_url(flow: Flow) -> str:
    return f"/{flow.issuer.id}/static/passkey.js"


def login_action(flow: Flow) -> str:
    return f"/{flow.issuer.id}/passkey/login"


def second_factor_action(flow: Flow) -> str:
    return f"/{flow.issuer.id}/passkey/second-factor"


def serves(method: AuthMethod | None, step: Step) -> bool:
    """A passkey method is either a first factor (passwordless) or a second factor, as its
    ``first_factor_only`` says; either way it must be switched on for sign-in."""
    if method is None or not method.enabled_login:
        return False
    if step is Step.FIRST_FACTOR:
        return method.first_factor_only
    return step in (Step.SECOND_FACTOR, Step.ENROLLMENT) and not method.first_factor_only


async def _options(
    flow: Flow, method: AuthMethod, step: Step, user: User | None, identifier: str
) -> tuple[str, dict[str, Any]]:
    """A new authentication challenge for this request and browser, and its WebAuthn options."""
    allow = []
    if step is Step.SECOND_FACTOR and user is not None:
        allow = credentials.descriptors(await credentials.of_user(flow.session, flow.issuer.id, user.id))
    data = {"identifier": identifier} if identifier else None
    row = await challenges.begin(
        flow.session,
        flow,
        challenges.AUTHENTICATE,
        step,
        user_id=user.id if step is Step.SECOND_FACTOR and user is not None else None,
        data=data,
    )
    options = ceremonies.authentication_options(
        credentials.relying_party(flow.rt, flow.issuer, method),
        challenge=row.challenge,
        user_verification=credentials.user_verification(method),
        allow=allow,
    )
    return row.id, options


async def ceremony_page(
    request: Request,
    flow: Flow,
    method: AuthMethod,
    step: Step,
    *,
    user: User | None = None,
    identifier: str = "",
    error: Text | None = None,
    notice: Text | None = None,
    status: int = 200,
) -> Response:
    ceremony, options = await _options(flow, method, step, user, identifier)
    await flow.session.commit()
    return flow.render(
        request,
        "passkey/ceremony.html",
        status,
        heading=_HEADINGS.get(step, SIGN_IN_WITH_PASSKEY),
        instructions=_INSTRUCTIONS.get(step, ""),
        button=_l("Use a passkey"),
        mode="get",
        options=options,
        ceremony=ceremony,
        action=f"/{flow.issuer.id}/passkey/verify",
        script_url=script_url(flow),
        restart_url=flow.others_url or flow.page_url("login"),
        username=identifier,
        error=error,
        notice=notice,
    )


async def _limited(request: Request, flow: Flow) -> Response | None:
    return await rate_limited(request, flow.rt, flow.issuer, "login", RATE_LIMITED)


async def _open(request: Request, issuer_id: str, session: Any) -> Flow | Response:
    flow = await flows.load_sign_in(request, session, issuer_id, post=True)
    if isinstance(flow, Response):
        return flow
    limited = await _limited(request, flow)
    return limited if limited is not None else flow


@router.post("/{issuer_id}/passkey/login")
async def passkey_login(issuer_id: str, request: Request) -> Response:
    """The "Sign in with a passkey" entry: a ceremony for any of the user's discoverable passkeys."""
    async with runtime(request).sessions() as session:
        flow = await _open(request, issuer_id, session)
        if isinstance(flow, Response):
            return flow
        method = await credentials.passkey_method(session, flow.issuer.id)
        if method is None or not serves(method, Step.FIRST_FACTOR):
            return flow.message(request, SIGN_IN_UNAVAILABLE, NOT_ENABLED)
        return await ceremony_page(request, flow, method, Step.FIRST_FACTOR)


@router.post("/{issuer_id}/passkey/login/options")
async def passkey_login_options(issuer_id: str, request: Request) -> Response:
    """The options of a discoverable ceremony as JSON, for the identifier field's autofill."""
    async with runtime(request).sessions() as session:
        flow = await _open(request, issuer_id, session)
        if isinstance(flow, Response):
            return flow
        method = await credentials.passkey_method(session, flow.issuer.id)
        if method is None or not serves(method, Step.FIRST_FACTOR):
            return JSONResponse({"error": "passkeys_disabled"}, 404, headers=SECURITY_HEADERS)
        ceremony, options = await _options(flow, method, Step.FIRST_FACTOR, None, "")
        await session.commit()
        body = {"ceremony": ceremony, "options": options, "action": f"/{flow.issuer.id}/passkey/verify"}
        response = JSONResponse(body, headers=SECURITY_HEADERS)
        flow.csrf.attach(response, flow.rt, flow.issuer.id)
        return response


@router.post("/{issuer_id}/passkey/second-factor")
async def passkey_second_factor(issuer_id: str, request: Request) -> Response:
    """The signed-in-so-far user confirms with one of their passkeys (offered on ``/mfa``)."""
    async with runtime(request).sessions() as session:
        flow = await _open(request, issuer_id, session)
        if isinstance(flow, Response):
            return flow
        method = await credentials.passkey_method(session, flow.issuer.id)
        user = await flow.pending_user()
        if user is None or not serves(method, Step.SECOND_FACTOR) or method is None:
            return flow.message(request, EXPIRED_HEADING, SIGN_IN_EXPIRED)
        return await ceremony_page(request, flow, method, Step.SECOND_FACTOR, user=user)


async def _check(
    flow: Flow, method: AuthMethod, ceremony: PasskeyChallenge, response: str
) -> tuple[User, VerifiedAssertion] | LazyText:
    """The user the response proves, or what to tell the browser."""
    try:
        claimed = ceremonies.read_assertion(response)
    except CeremonyFailed:
        return NOT_VERIFIED
    passkey = await credentials.by_credential(flow.session, flow.issuer.id, claimed.credential_id)
    if passkey is None:
        return UNKNOWN
    if claimed.user_handle is not None and claimed.user_handle != passkey.user_id:
        return NOT_VERIFIED
    if ceremony.user_id is not None and ceremony.user_id != passkey.user_id:
        return NOT_VERIFIED  # a second factor must be the signed-in user's own passkey
    identifier = ceremony.data.get("identifier")
    if identifier:
        named = await users.find_by_username(flow.session, flow.issuer.id, str(identifier))
        if named is None or named.id != passkey.user_id:
            return NOT_VERIFIED
    try:
        verified = ceremonies.verify_assertion(
            credentials.relying_party(flow.rt, flow.issuer, method),
            response,
            challenge=ceremony.challenge,
            public_key=passkey.public_key or "",
            sign_count=passkey.sign_count,
            require_user_verification=credentials.requires_user_verification(method),
        )
    except CeremonyFailed:
        return NOT_VERIFIED
    if not await credentials.record_use(flow.session, passkey, verified):
        return NOT_VERIFIED  # another sign-in moved the counter past this one meanwhile
    user = await users.lock(flow.session, passkey.user_id)
    if user is None or user.status == "deleted":
        return UNKNOWN
    if user.status != "active":
        return flows.inactive_text(user.status)
    return user, verified


@router.post("/{issuer_id}/passkey/verify")
async def passkey_verify(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        flow = await _open(request, issuer_id, session)
        if isinstance(flow, Response):
            return flow
        ceremony = await challenges.spend(
            session, flow, flow.form.get("ceremony", ""), challenges.AUTHENTICATE
        )
        if ceremony is None:
            await session.commit()
            return flow.message(request, REQUEST_EXPIRED, EXPIRED)
        step = Step(ceremony.step)
        method = await credentials.passkey_method(session, flow.issuer.id)
        current = await flow.pending_user() if step is Step.SECOND_FACTOR else None
        if method is None or not serves(method, step) or (step is Step.SECOND_FACTOR and current is None):
            await session.commit()
            return flow.message(request, SIGN_IN_UNAVAILABLE, NOT_ENABLED)
        outcome = await _check(flow, method, ceremony, flow.form.get("credential", ""))
        if isinstance(outcome, LazyText):
            metrics.count_login("failure", locked_now=False)
            await _second_factor_event(flow, step, current, method, succeeded=False)
            await session.commit()  # the challenge stays spent
            identifier = str(ceremony.data.get("identifier") or "")
            return await ceremony_page(
                request, flow, method, step, user=current, identifier=identifier, error=outcome, status=400
            )
        user, verified = outcome
        metrics.count_login("success", locked_now=False)
        await _second_factor_event(flow, step, user, method, succeeded=True)
        factor = flows.factor(credentials.TYPE, method.id, credentials.amr(verified))
        return await flow.passed(request, user, factor)


async def _second_factor_event(
    flow: Flow, step: Step, user: User | None, method: AuthMethod, *, succeeded: bool
) -> None:
    if step is not Step.SECOND_FACTOR or user is None:
        return
    kind = "succeeded" if succeeded else "failed"
    await events.emit(
        flow.session,
        f"user.mfa.verification.{kind}",
        subject={"type": "user", "id": user.id},
        data={"method": credentials.TYPE, "method_id": method.id},
        account_id=flow.issuer.account_id,
        issuer_id=flow.issuer.id,
        user_id=user.id,
    )
