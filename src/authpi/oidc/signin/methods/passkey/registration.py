"""Creating passkeys: at sign-up (``GET|POST /{issuer_id}/passkey/signup``, then the ceremony) and
as a second factor on the enrollment page (``POST /{issuer_id}/passkey/enroll``); both ceremonies
answer at ``POST /{issuer_id}/passkey/register``.

Sign-up asks for an email and a name, then the browser creates the passkey; the account and its
passkey are stored together. As with a password sign-up, the answer is the same whether the
address was free or already taken (a taken address's account is left untouched and the new
passkey is discarded), so sign-up tells nobody which addresses have accounts: the visitor then
signs in with the new passkey, which only works if it was kept.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto import hashing
from authpi.i18n import LazyText, Text, _l
from authpi.oidc.context import runtime
from authpi.oidc.pages import EXPIRED as SIGN_IN_EXPIRED
from authpi.oidc.pages import SIGN_IN_EXPIRED as EXPIRED_HEADING
from authpi.oidc.pages import rate_limited, send_limited
from authpi.oidc.routes import Routes
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin.flow import Flow
from authpi.oidc.signin.methods.passkey import ceremonies, challenges, credentials, login
from authpi.oidc.signin.methods.passkey.ceremonies import CeremonyFailed, NewCredential
from authpi.oidc.signin.steps import Step
from authpi.runtime import Runtime
from authpi.services import email_verification, events, one_time_codes, users, verifiers
from authpi.services.errors import InvalidInput
from authpi.services.issuer_settings import portal_enabled
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.passkey_challenges import PasskeyChallenge
from authpi.storage.tables.users import User

router = Routes()
NOT_CREATED = _l("The passkey could not be created. Try again.")
SIGNUP_CLOSED = flows.NO_SIGNUPS
WRONG_CODE = _l("That code is not right. Enter the code from the email.")
SPENT_CODE = _l("This code has expired or was tried too often. Sign up again for a new one.")
_HEADINGS = {Step.REGISTRATION: _l("Create your passkey"), Step.ENROLLMENT: _l("Add a passkey")}
_INSTRUCTIONS = {
    Step.REGISTRATION: _l("Your device saves a passkey for %(who)s: you sign in with it from now on."),
    Step.ENROLLMENT: _l("Your device saves a passkey for %(who)s: you confirm your sign-ins with it."),
}


def signup_open(flow: Flow, method: AuthMethod | None) -> bool:
    """Sign-up with a passkey: its portal and the login portal are on, the method accepts sign-ups
    and signs in on its own (a first factor), and the access mode lets anyone ask."""
    settings = flow.issuer.settings
    return (
        method is not None
        and login.serves(method, Step.FIRST_FACTOR)
        and method.enabled_signup
        and portal_enabled(settings, "signup")
        and portal_enabled(settings, "login")
        and settings["access"]["mode"] in ("open", "approval")
    )


def signup_url(flow: Flow) -> str:
    return flow.page_url("passkey/signup")


def enroll_action(flow: Flow) -> str:
    return f"/{flow.issuer.id}/passkey/enroll"


async def begin_registration(
    session: AsyncSession,
    rt: Runtime,
    bound: challenges.Bound,
    method: AuthMethod,
    step: Step,
    *,
    handle: str,
    user_name: str,
    display_name: str,
    user_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """A new registration ceremony for the account ``handle`` (its user id), bound to ``bound``
    (a sign-in, or the account portal): its ID and the ``navigator.credentials.create`` options,
    which exclude the user's passkeys. Added, not committed."""
    exclude = []
    if user_id is not None:
        exclude = credentials.descriptors(await credentials.of_user(session, bound.issuer.id, user_id))
    row = await challenges.begin(
        session, bound, challenges.REGISTER, step, user_id=user_id, data={**(data or {}), "handle": handle}
    )
    settings = credentials.settings(method)
    options = ceremonies.registration_options(
        credentials.relying_party(rt, bound.issuer, method),
        challenge=row.challenge,
        user_handle=handle,
        user_name=user_name,
        display_name=display_name,
        user_verification=str(settings["user_verification"]),
        resident_key=str(settings["resident_key"]),
        exclude=exclude,
    )
    return row.id, options


async def _create_page(
    request: Request,
    flow: Flow,
    method: AuthMethod,
    step: Step,
    *,
    handle: str,
    user_name: str,
    display_name: str,
    user_id: str | None = None,
    data: dict[str, Any] | None = None,
    error: Text | None = None,
    status: int = 200,
) -> Response:
    """A registration ceremony for the account ``handle`` (its user id) and its page."""
    ceremony, options = await begin_registration(
        flow.session,
        flow.rt,
        flow,
        method,
        step,
        handle=handle,
        user_name=user_name,
        display_name=display_name,
        user_id=user_id,
        data=data,
    )
    await flow.session.commit()
    return flow.render(
        request,
        "passkey/ceremony.html",
        status,
        heading=_HEADINGS[step],
        instructions=_INSTRUCTIONS[step].format(who=user_name),
        button=_l("Create a passkey"),
        mode="create",
        options=options,
        ceremony=ceremony,
        action=f"/{flow.issuer.id}/passkey/register",
        script_url=login.script_url(flow),
        restart_url=flow.others_url or flow.page_url("login"),
        username="",
        error=error,
    )


def _signup_form(request: Request, flow: Flow, error: Text | None = None, status: int = 200) -> Response:
    return flow.render(
        request,
        "passkey/signup.html",
        status,
        action=f"/{flow.issuer.id}/passkey/signup",
        login_url=flow.page_url("login"),
        email=flow.form.get("email", "")[:320],
        name=flow.form.get("name", "")[:200],
        error=error,
    )


def _signup_problem(issuer: Issuer, email: str) -> tuple[str, str] | LazyText:
    """The normalised (username, key) of a sign-up address, or what is wrong with it."""
    try:
        username = users.normalize_username("email", email)
    except InvalidInput:
        return _l("Enter a valid email address.")
    domains = [d.lower() for d in issuer.settings["access"].get("allowed_email_domains") or []]
    if domains and username.key.rsplit("@", 1)[-1] not in domains:
        return _l("Sign-up is not open to this email domain.")
    return username.value, username.key


@router.get("/{issuer_id}/passkey/signup")
@router.post("/{issuer_id}/passkey/signup")
async def passkey_signup(issuer_id: str, request: Request) -> Response:
    post = request.method == "POST"
    async with runtime(request).sessions() as session:
        flow = await flows.load(request, session, issuer_id, post=post)
        if isinstance(flow, Response):
            return flow
        method = await credentials.passkey_method(session, flow.issuer.id)
        if method is None or not signup_open(flow, method):
            return flow.message(request, flows.SIGNUP_CLOSED, SIGNUP_CLOSED, 403)
        if not post:
            return _signup_form(request, flow)
        limited = await rate_limited(request, flow.rt, flow.issuer, "login", login.RATE_LIMITED)
        if limited is not None:
            return limited
        checked = _signup_problem(flow.issuer, flow.form.get("email", "").strip()[:320])
        if isinstance(checked, LazyText):
            return _signup_form(request, flow, checked, 400)
        email, key = checked
        routed = await flow.realm(request, email)  # an organization's SSO creates its domains' users
        if routed is not None:
            return routed
        name = flow.form.get("name", "").strip()[:200]
        if email_verification.required_at_signup(flow.issuer):
            return await _prove_address(request, flow, email, key, name)
        return await _ceremony_for(request, flow, method, email, key, name, verified=False)


async def _ceremony_for(
    request: Request, flow: Flow, method: AuthMethod, email: str, key: str, name: str, *, verified: bool
) -> Response:
    handle = ids.user_id()  # the account's id if it is created: the credential's user handle
    return await _create_page(
        request,
        flow,
        method,
        Step.REGISTRATION,
        handle=handle,
        user_name=email,
        display_name=name or email,
        data={"email": email, "key": key, "name": name, "verified": verified},
    )


def _verify_page(
    request: Request, flow: Flow, email: str, *, error: Text | None = None, status: int = 200
) -> Response:
    return flow.render(
        request,
        "verify_email.html",
        status,
        action=f"/{flow.issuer.id}/passkey/signup/verify",
        email=email,
        restart_url=signup_url(flow),
        error=error,
    )


async def _prove_address(request: Request, flow: Flow, email: str, key: str, name: str) -> Response:
    """The issuer proves sign-up addresses: a code by email first (no link: the passkey is created
    in this browser, after the code), the ceremony after it. A taken address gets no mail and the
    same page."""
    limited = await send_limited(request, flow.rt, flow.issuer, email)
    if limited is not None:
        return limited
    if not await email_verification.taken(flow.session, flow.issuer.id, key):
        await email_verification.send(
            flow.session,
            flow.rt.secretbox,
            flow.issuer,
            public_url=flow.rt.settings.public_url_base,
            purpose=email_verification.SIGNUP,
            email=email,
            data={"email": email, "key": key, "name": name},
            request_id=flow.request_id,
            browser=flow.browser(),
            link=False,
            locale=flow.locale(request),
        )
        await flow.session.commit()
    return _verify_page(request, flow, email)


@router.post("/{issuer_id}/passkey/signup/verify")
async def passkey_signup_verify(issuer_id: str, request: Request) -> Response:
    """The code from the email; then the ceremony creates the passkey and, with it, the account."""
    async with runtime(request).sessions() as session:
        flow = await flows.load(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        method = await credentials.passkey_method(session, flow.issuer.id)
        if method is None or not signup_open(flow, method):
            return flow.message(request, _l("Sign-up closed"), SIGNUP_CLOSED, 403)
        limited = await rate_limited(request, flow.rt, flow.issuer, "login", login.RATE_LIMITED)
        if limited is not None:
            return limited
        email = flow.form.get("email", "")[:320]
        row = await email_verification.pending_signup(
            session, flow.issuer.id, flow.request_id, flow.browser()
        )
        if row is None:
            return _verify_page(request, flow, email, error=WRONG_CODE, status=400)
        check = await one_time_codes.check_code(
            session, flow.rt.secretbox, code_id=row.id, code=flow.form.get("code", "")
        )
        if not check.success or check.row is None:
            text = WRONG_CODE if check.error == "wrong" else SPENT_CODE
            return _verify_page(request, flow, email, error=text, status=400)
        data = check.row.data
        return await _ceremony_for(
            request, flow, method, str(data["email"]), str(data["key"]), str(data["name"]), verified=True
        )


async def enrollment_page(request: Request, flow: Flow, method: AuthMethod, user: User) -> Response:
    """The ceremony that adds a passkey for the user signing in (from ``/mfa/enroll``)."""
    display = str(user.profile.get("name") or user.username)
    return await _create_page(
        request,
        flow,
        method,
        Step.ENROLLMENT,
        handle=user.id,
        user_name=user.username,
        display_name=display,
        user_id=user.id,
    )


async def _enrolling(flow: Flow, user: User | None) -> bool:
    """Whether this sign-in is at its enrollment step (the policy asks for a second factor)."""
    from authpi.oidc.signin import policy  # imports the registry, which imports this package

    return user is not None and await policy.decide(flow, user) is policy.Decision.ENROLL


@router.post("/{issuer_id}/passkey/enroll")
async def passkey_enroll(issuer_id: str, request: Request) -> Response:
    """Add a passkey as a second factor for the user signing in (offered on ``/mfa/enroll``)."""
    async with runtime(request).sessions() as session:
        flow = await flows.load(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        limited = await rate_limited(request, flow.rt, flow.issuer, "login", login.RATE_LIMITED)
        if limited is not None:
            return limited
        method = await credentials.passkey_method(session, flow.issuer.id)
        user = await flow.pending_user()
        if method is None or user is None or not login.serves(method, Step.ENROLLMENT):
            return flow.message(request, EXPIRED_HEADING, SIGN_IN_EXPIRED)
        if not await _enrolling(flow, user):
            return flow.expired(request)
        return await enrollment_page(request, flow, method, user)


async def _new_account(session: Any, issuer: Issuer, ceremony: PasskeyChallenge) -> User:
    """The account a passkey sign-up creates (added, not committed), with ``user.created``."""
    now = now_ms()
    verified = ceremony.data.get("verified") is True
    profile: dict[str, Any] = {"email_verified": verified}
    if ceremony.data.get("name"):
        profile["name"] = str(ceremony.data["name"])[:200]
    key = str(ceremony.data["key"])
    user = User(
        id=str(ceremony.data["handle"]),
        issuer_id=issuer.id,
        username_type="email",
        username=str(ceremony.data["email"]),
        username_key=key,
        username_hash=hashing.digest(key),
        status="pending_approval" if issuer.settings["access"]["mode"] == "approval" else "active",
        status_at=now,
        profile=profile,
        metadata_={},
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    scope: dict[str, Any] = {"account_id": issuer.account_id, "issuer_id": issuer.id, "user_id": user.id}
    await events.emit_for(session, "user.created", user, "user", **scope)
    if verified:
        await events.emit_for(session, "user.email.verified", user, "user", **scope)
    return user


async def _signed_up(
    request: Request, flow: Flow, method: AuthMethod, ceremony: PasskeyChallenge, new: NewCredential
) -> Response:
    """Store the account with its passkey unless the address is taken; one answer either way."""
    try:
        user = await _new_account(flow.session, flow.issuer, ceremony)
        # The unique (issuer, username key) decides, also between concurrent sign-ups.
        await flow.session.flush()
        await credentials.add(flow.session, flow.issuer, user, new, second_factor=False)
        await flow.session.commit()
    except IntegrityError:
        await flow.session.rollback()
    method = await credentials.passkey_method(flow.session, flow.issuer.id) or method  # reloaded
    if flow.issuer.settings["access"]["mode"] == "approval":
        return flow.message(request, flows.THANKS, flows.AWAITING_APPROVAL, 200)
    notice = _l("Thanks for signing up. Use your new passkey once more to sign in.")
    return await login.ceremony_page(request, flow, method, Step.FIRST_FACTOR, notice=notice)


@router.post("/{issuer_id}/passkey/register")
async def passkey_register(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        flow = await flows.load(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        limited = await rate_limited(request, flow.rt, flow.issuer, "login", login.RATE_LIMITED)
        if limited is not None:
            return limited
        ceremony = await challenges.spend(session, flow, flow.form.get("ceremony", ""), challenges.REGISTER)
        await session.commit()  # spent, whatever follows
        if ceremony is None:
            return flow.message(request, login.REQUEST_EXPIRED, login.EXPIRED)
        step = Step(ceremony.step)
        method = await credentials.passkey_method(session, flow.issuer.id)
        user = await flow.pending_user() if step is Step.ENROLLMENT else None
        if step is Step.REGISTRATION:
            # An address the issuer proves at sign-up was proven before this ceremony started.
            proven = ceremony.data.get("verified") is True
            allowed = signup_open(flow, method) and (
                proven or not email_verification.required_at_signup(flow.issuer)
            )
        else:
            allowed = (
                user is not None
                and user.id == ceremony.user_id
                and login.serves(method, step)
                and await _enrolling(flow, user)
            )
        if method is None or not allowed:
            return flow.message(request, login.REQUEST_EXPIRED, login.EXPIRED)
        try:
            new = ceremonies.verify_registration(
                credentials.relying_party(flow.rt, flow.issuer, method),
                flow.form.get("credential", ""),
                challenge=ceremony.challenge,
                require_user_verification=credentials.requires_user_verification(method),
            )
        except CeremonyFailed:
            data = {k: v for k, v in ceremony.data.items() if k != "handle"}
            return await _create_page(
                request,
                flow,
                method,
                step,
                handle=str(ceremony.data["handle"]),
                user_name=str(ceremony.data.get("email") or (user.username if user else "")),
                display_name=str(ceremony.data.get("name") or ceremony.data.get("email") or ""),
                user_id=ceremony.user_id,
                data=data,
                error=NOT_CREATED,
                status=400,
            )
        if step is Step.REGISTRATION:
            return await _signed_up(request, flow, method, ceremony, new)
        assert user is not None
        if await credentials.by_credential(session, flow.issuer.id, new.credential_id) is not None:
            return flow.message(
                request, _l("Passkey already registered"), _l("This passkey is already registered.")
            )
        await credentials.add(session, flow.issuer, user, new, second_factor=True)
        # The new passkey proves this sign-in's second factor, as a first TOTP code does.
        flow.prove(user, flows.factor(credentials.TYPE, method.id, credentials.amr(new)))
        codes = await verifiers.first_backup_codes(session, flow.rt.secretbox, flow.issuer, user)
        if not codes:
            return await flow.advance(request, user)
        await flow.save()
        await session.commit()
        return flow.render(
            request,
            "passkey/backup_codes.html",
            continue_action=f"/{flow.issuer.id}/mfa/continue",
            codes=codes,
        )
