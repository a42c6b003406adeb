"""A sign-in in progress, and what comes after each proven factor.

The flow is bound to the pending authorization request (the ``request`` field of every page) and,
once a factor is proven, to the browser that proved it: progress is stored on the request row with
the digest of that browser's CSRF cookie, so a later step presented by another browser finds no
usable flow. When the factors proven satisfy the issuer's policy the flow ends in a browser session
and continues the authorization request.

Trusted devices: any second factor's form may carry the ``trust_device`` checkbox (the shared
``trust_device.html``); proving a second factor with it ticked marks the progress, and the sign-in
that ends with several factors then trusts this browser (a device cookie). At a later sign-in the
policy may let that cookie stand in for the second factor (``trusted_device``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from authpi.clock import now_ms
from authpi.crypto import hashing
from authpi.i18n import LazyText, Text, _l, _ln
from authpi.oidc import authorization
from authpi.oidc.authorization import AuthorizeParams
from authpi.oidc.browser import DEVICE_COOKIE, SESSION_COOKIE, Csrf, set_cookie
from authpi.oidc.context import auth_method, load_client, load_issuer, parse_form, runtime
from authpi.oidc.pages import (
    EXPIRED,
    SIGN_IN_EXPIRED,
    locale_for,
    message,
    page_url,
    proceed,
    rate_limited,
    redirect,
    render,
)
from authpi.oidc.portal.client import PORTAL_CLIENT, portal_client
from authpi.oidc.signin.steps import Factor
from authpi.runtime import Runtime
from authpi.services import events, trusted_devices, upstream_identities
from authpi.services import sessions as session_service
from authpi.services.issuer_settings import portal_enabled
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.clients import Client
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.users import User
from authpi.storage.tables.verifiers import TrustedDevice

FORM_LIMIT = 32 * 1024
TRUST_FIELD = "trust_device"  # the checkbox of trust_device.html
SIGN_IN_UNAVAILABLE = _l("Sign-in unavailable")
TOO_MANY = _l("Too many attempts. Wait and retry.")
TOO_MANY_SIGN_INS = _l("Too many sign-in attempts. Wait and retry.")
NO_METHOD = _l("No sign-in method is enabled.")
SIGNUP_CLOSED = _l("Sign-up closed")
NO_SIGNUPS = _l("This application does not accept sign-ups.")
THANKS = _l("Thanks for signing up")
AWAITING_APPROVAL = _l("Your request has been received. You can sign in once it has been approved.")


def locked_text(locked_for_ms: int) -> Text:
    """What a locked credential tells the user (decision 20)."""
    minutes = -(-locked_for_ms // 60_000)  # rounded up: "1 minute" until the very end
    return _ln(
        "Too many failed attempts. Try again in %(n)s minute.",
        "Too many failed attempts. Try again in %(n)s minutes.",
        minutes,
    )


def inactive_text(status: str) -> LazyText:
    """Why an account that proved its credential still cannot sign in."""
    if status == "pending_approval":
        return _l("This account is waiting for approval and cannot sign in.")
    if status == "suspended":
        return _l("This account is suspended and cannot sign in.")
    if status == "blocked":
        return _l("This account is blocked and cannot sign in.")
    return _l("This account is disabled and cannot sign in.")


@dataclass
class Progress:
    """The factors proven so far in this sign-in, and by which user and browser."""

    user_id: str | None = None
    browser: str | None = None
    factors: list[dict[str, Any]] = field(default_factory=list)
    # The user asked to trust this browser when proving a second factor.
    trust_device: bool = False
    # What a method still asks of ``user_id`` before its factor counts (``owe``), e.g. choosing a
    # new password after a temporary one: ``{"method": <type>, "step": <name>, ...}``. The flow
    # holds no proven factor meanwhile, so no page can finish the sign-in around it.
    pending: dict[str, Any] | None = None
    # An upstream identity waiting to be linked to an existing account (account_linking_required):
    # linked once this browser proves that account's own first factor (services/upstream_identities).
    link: dict[str, Any] | None = None

    @classmethod
    def of(cls, raw: dict[str, Any] | None) -> Progress:
        raw = raw or {}
        pending = raw.get("pending")
        return cls(
            raw.get("user_id"),
            raw.get("browser"),
            list(raw.get("factors") or []),
            raw.get("trust_device") is True,
            pending if isinstance(pending, dict) else None,
            raw.get("link") if isinstance(raw.get("link"), dict) else None,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "browser": self.browser,
            "factors": self.factors,
            "trust_device": self.trust_device,
            "pending": self.pending,
            "link": self.link,
        }

    def amr(self) -> list[str]:
        """RFC 8176 ``amr`` of the factors proven, with ``mfa`` once two different methods are."""
        values: list[str] = []
        for factor in self.factors:
            values.extend(v for v in factor["amr"] if v not in values)
        if len({factor["method"] for factor in self.factors}) > 1:
            values.append("mfa")
        return values


@dataclass
class Flow:
    """One step of a pending authorization request, as the hosted pages see it."""

    rt: Runtime
    session: AsyncSession
    issuer: Issuer
    client: Client
    params: AuthorizeParams
    request_id: str
    csrf: Csrf
    form: dict[str, str]
    progress: Progress
    # On a second-factor or enrollment page: where the user can pick another way, if there is one.
    others_url: str | None = None
    # The browser's device cookie, and the trusted device it stands for once the policy found it.
    device_cookie: str | None = None
    trusted_device: TrustedDevice | None = None

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        """A hosted page of this flow: branded, with the CSRF token and the request it continues."""
        return render(
            request,
            self.rt,
            self.issuer,
            self.csrf,
            template,
            status,
            request_id=self.request_id,
            trust_device_days=self.trust_device_days(),
            **context,
        )

    def locale(self, request: Request) -> str:
        """The language of this flow's pages (``ui_locales``, ``Accept-Language``, the issuer's
        default): what a message sent from it (``services.messages.enqueue``) is written in."""
        return locale_for(request, self.issuer)

    def trust_device_days(self) -> int:
        """For the ``trust_device`` checkbox: the days a trust lasts, on the pages that follow a
        first factor (second factors, enrollment); 0 elsewhere and while the issuer has it off."""
        return trusted_devices.days(self.issuer) if self.progress.factors else 0

    def message(self, request: Request, heading: Text, text: Text, status: int = 400) -> Response:
        return message(request, self.rt, self.issuer, heading, text, status)

    def login_closed(self, request: Request) -> Response | None:
        """The refusal page while ``settings.portals.login`` is switched off."""
        if portal_enabled(self.issuer.settings, "login"):
            return None
        text = _l("Signing in is switched off for this application. Try again later.")
        return self.message(request, SIGN_IN_UNAVAILABLE, text, 403)

    def page_url(self, page: str) -> str:
        return page_url(self.issuer, page, self.request_id)

    def browser(self) -> str:
        return hashing.digest(self.csrf.cookie)

    async def passed(self, request: Request, user: User, factor: Factor) -> Response:
        """``factor`` of ``user`` is proven: go on to the next step, or finish the sign-in. A first
        factor a home realm refuses for this user (``sso_only``) ends on a page saying why."""
        from authpi.oidc.signin import realms  # the realms reach the upstream routes, which import this

        if not self.progress.factors or self.progress.user_id != user.id:
            refused = await realms.refusal(self, user, factor)
            if refused is not None:
                return self.message(request, SIGN_IN_UNAVAILABLE, refused, 403)
        link, self.progress.link = self.progress.link, None
        self.prove(user, factor)
        if link is not None and link.get("user_id") == user.id and len(self.progress.factors) == 1:
            # The account the upstream identity's email names proved its own first factor.
            await upstream_identities.complete(self.session, self.rt.secretbox, self.issuer, user, link)
        return await self.advance(request, user)

    async def realm(self, request: Request, identifier: str) -> Response | None:
        """Where a home realm takes ``identifier`` instead of the method at hand, if anywhere: what
        every sign-up method asks with the address it is given, before it sends, creates or
        provisions anything (the identifier page asks the same for a sign-in)."""
        from authpi.oidc.signin import realms

        return await realms.route(request, self, identifier)

    async def pending_user(self) -> User | None:
        """The user who proved the factors so far in this browser, while they may still sign in
        (the pages of a second factor or an enrollment continue only for them)."""
        if not self.progress.factors or self.progress.user_id is None:
            return None
        user = await self.session.get(User, self.progress.user_id)
        if user is None or user.issuer_id != self.issuer.id or user.status != "active":
            return None
        return user

    def expired(self, request: Request) -> Response:
        return self.message(request, SIGN_IN_EXPIRED, EXPIRED)

    async def method_of_type(self, method_type: str) -> AuthMethod | None:
        """The issuer's method of ``method_type``, while it is switched on for sign-in."""
        row = await auth_method(self.session, self.issuer.id, method_type)
        return row if row is not None and row.enabled_login else None

    async def method_for_signup(self, method_type: str) -> AuthMethod | None:
        """The issuer's method of ``method_type``, while it accepts sign-ups."""
        row = await auth_method(self.session, self.issuer.id, method_type)
        return row if row is not None and row.enabled_signup else None

    async def second_factor(
        self, request: Request, method_type: str, *, enrolling: bool = False
    ) -> tuple[User, AuthMethod] | Response:
        """What every check of a second factor (or of one being enrolled) starts with: the user this
        browser proved a first factor for, still owing that step, the method switched on, and the
        attempt within the rate limit; or the page to answer with."""
        from authpi.oidc.signin import policy  # imports the registry, which imports the methods

        owed = policy.Decision.ENROLL if enrolling else policy.Decision.SECOND_FACTOR
        user = await self.pending_user()
        if user is None or await policy.decide(self, user) is not owed:
            return self.expired(request)
        method = await self.method_of_type(method_type)
        if method is None:
            return self.message(request, SIGN_IN_UNAVAILABLE, _l("This sign-in method is switched off."))
        limited = await rate_limited(request, self.rt, self.issuer, "login", TOO_MANY)
        if limited is not None:
            return limited
        return user, method

    async def owe(self, user: User, method: str, step: str, **data: Any) -> None:
        """``user`` proved a credential of ``method`` that counts only once they complete ``step``
        (on that method's own page, in this browser): saved on the request with no factor
        proven, so nothing but that step can continue the sign-in (``owed`` reads it back)."""
        self.progress = Progress(user.id, self.browser())  # factors proven before no longer count
        self.progress.pending = {"method": method, "step": step, **data}
        await self.save()

    def owed(self, method: str, step: str) -> dict[str, Any] | None:
        """The step ``method`` left owing in this browser (see ``owe``), with the user's ID."""
        pending = self.progress.pending
        if pending is None or pending.get("method") != method or pending.get("step") != step:
            return None
        return {**pending, "user_id": self.progress.user_id}

    def prove(self, user: User, factor: Factor) -> None:
        """Add ``factor`` of ``user`` to the progress (saved with ``save``; ``advance`` goes on)."""
        if self.progress.user_id not in (None, user.id):
            # A factor of someone else than the user who proved the earlier ones: start over.
            self.progress = Progress()
        self.progress.pending = None
        if self.progress.factors and self.form.get(TRUST_FIELD):
            self.progress.trust_device = True  # a factor after the first one, with the box ticked
        self.progress.user_id = user.id
        self.progress.browser = self.browser()
        self.progress.factors.append(factor.as_dict())

    async def advance(self, request: Request, user: User) -> Response:
        """What the issuer's policy asks after the factors proven so far: a second factor (the
        progress is kept for ``/mfa``, in this browser only), enrolling one, or nothing more."""
        from authpi.oidc.signin import policy  # the policy asks the strategies, which import this

        decision = await policy.decide(self, user)
        if decision is policy.Decision.DONE:
            return await self.finish(request, user)
        if decision is policy.Decision.UNAVAILABLE:
            await self.session.commit()
            return self.message(request, SIGN_IN_UNAVAILABLE, policy.UNAVAILABLE_TEXT, 403)
        await self.save()
        await self.session.commit()
        return redirect(self.page_url(policy.PAGES[decision]))

    async def save(self) -> None:
        """Keep the progress on the pending request, for the next step (in this browser only)."""
        await authorization.save_progress(self.session, self.request_id, self.progress.as_dict())

    async def finish(self, request: Request, user: User) -> Response:
        """The factors suffice: a new browser session for ``user``, then the authorization continues."""
        first = self.progress.factors[0]
        device = {
            "user_agent": request.headers.get("user-agent", "")[:500],
            "ip": request.client.host if request.client else None,
        }
        amr = self.progress.amr()
        trusted_by = self.trusted_device if self.trusted_device and "mfa" not in amr else None
        # Signing in again in this browser supersedes its previous sign-in, whoever it was.
        op, cookie = await session_service.create_op_session(
            self.session,
            self.issuer,
            user.id,
            method=first["method"],
            amr=amr,
            device=device,
            replaces=request.cookies.get(SESSION_COOKIE),
            trusted_device_id=trusted_by.id if trusted_by else None,
        )
        if trusted_by is not None:
            await trusted_devices.touch(self.session, trusted_by)
        trusted = None
        if self.progress.trust_device and "mfa" in amr:
            trusted = await trusted_devices.trust_browser(
                self.session, self.issuer, user.id, user_agent=device["user_agent"] or None
            )
        response = await proceed(
            request,
            self.rt,
            self.session,
            self.issuer,
            self.client,
            self.params,
            self.request_id,
            op,
            user,
            new_cookie=cookie,
        )
        if trusted is not None and response.status_code in (302, 303):
            # Only once the sign-in (and the device with it) is committed: the redirect onwards.
            max_age = max(0, (trusted.device.expires_at - now_ms()) // 1000)
            set_cookie(response, self.rt, self.issuer.id, DEVICE_COOKIE, trusted.secret, max_age)
        return response


def factor(method: str, method_id: str, amr: tuple[str, ...]) -> Factor:
    return Factor(method=method, method_id=method_id, amr=amr, at=now_ms())


async def read_form(request: Request) -> dict[str, str]:
    """A hosted page's form fields (the first value of each), bounded like every sign-in form."""
    return {k: v[0] for k, v in parse_form(await request.body(), FORM_LIMIT).items()}


async def load(
    request: Request, session: AsyncSession, issuer_id: str, *, post: bool, request_id: str | None = None
) -> Flow | Response:
    """The flow a hosted page continues, or the page to answer with when there is none: a POST
    without a valid CSRF token, an unknown or expired request, or progress made in another
    browser. ``request_id`` names the request when the page's URL does not (a link sent by mail,
    or a callback from an upstream provider, which finds it through its state)."""
    rt = runtime(request)
    issuer = await load_issuer(session, issuer_id)
    form = await read_form(request) if post else {}
    csrf = Csrf(rt, request)
    if post and not csrf.valid(form.get("csrf")):
        heading, text = _l("Please try again"), _l("Your session form expired. Go back and retry.")
        return message(request, rt, issuer, heading, text, 403)
    if request_id is None:
        request_id = form.get("request") if post else request.query_params.get("request")
    pending = await authorization.recall_pending(session, issuer, request_id)
    client = None
    if pending is not None:
        portal = pending.client_id == PORTAL_CLIENT  # a sign-in to the account portal or an invitation
        client = portal_client(issuer) if portal else await load_client(session, issuer.id, pending.client_id)
    if pending is None or client is None or request_id is None:
        return message(request, rt, issuer, SIGN_IN_EXPIRED, EXPIRED)
    progress = Progress.of(pending.sign_in)
    params = AuthorizeParams(**pending.params)
    request.state.ui_locales = params.ui_locales  # every page of this flow speaks its language
    flow = Flow(
        rt,
        session,
        issuer,
        client,
        params,
        request_id,
        csrf,
        form,
        progress,
        device_cookie=request.cookies.get(DEVICE_COOKIE),
    )
    if progress.browser is not None and progress.browser != flow.browser():
        await _record_device_mismatch(session, issuer, pending.client_id, progress)
        return message(request, rt, issuer, SIGN_IN_EXPIRED, EXPIRED)
    return flow


async def _record_device_mismatch(
    session: AsyncSession, issuer: Issuer, client_id: str, progress: Progress
) -> None:
    """``auth.flow.device-mismatch``: another browser presented a flow whose first factor was proven
    elsewhere (a leaked or shared sign-in link). The request ID stays out: it is the flow's handle."""
    await events.emit(
        session,
        "auth.flow.device-mismatch",
        subject={"type": "issuer", "id": issuer.id},
        data={"client_id": client_id, "factors": [factor["method"] for factor in progress.factors]},
        account_id=issuer.account_id,
        issuer_id=issuer.id,
        user_id=progress.user_id,
        client_id=client_id,
    )
    await session.commit()


async def load_sign_in(
    request: Request, session: AsyncSession, issuer_id: str, *, post: bool, request_id: str | None = None
) -> Flow | Response:
    """``load``, refused with the closed page while the issuer's login portal is switched off: what
    every sign-in page (identifier, picker, a method, the second factor) starts with."""
    flow = await load(request, session, issuer_id, post=post, request_id=request_id)
    if isinstance(flow, Response):
        return flow
    closed = flow.login_closed(request)
    return closed if closed is not None else flow
