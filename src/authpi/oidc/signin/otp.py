"""A code sent by email or SMS as a first factor: the routes an OTP method registers.

``POST {start}`` (identifier, or ``resend``) sends a 6-digit code through ``delivery.send`` and
shows the code page; ``POST {start}/verify`` checks it. Unknown identifiers take the same steps
with a decoy code nobody receives, so the pages cannot tell whether an account exists.

Three guards stack: the per-code limit (``max_attempts`` wrong codes spend the code), the decision-20
lockout on the identifier for this method (5 failures lock it for 15 minutes, across new codes), and
the per-IP login rate limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from authpi.i18n import Text, _l, _ln
from authpi.oidc.context import runtime
from authpi.oidc.pages import rate_limited
from authpi.oidc.routes import Routes
from authpi.oidc.signin import delivery
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin.flow import SIGN_IN_UNAVAILABLE, TOO_MANY, Flow
from authpi.oidc.signin.steps import Offer
from authpi.services import lockouts, signups, users
from authpi.services import one_time_codes as otc
from authpi.services.auth_method_types import TYPES
from authpi.services.errors import InvalidInput
from authpi.services.issuer_settings import portal_enabled
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.one_time_codes import OneTimeCode

MAX_IDENTIFIER = 320
WRONG = _l("That code is not right. Check it and try again.")
EXPIRED = _l("That code has expired. Ask for a new one.")
SPENT = _l("Too many wrong codes. Ask for a new one.")
NO_CODE = _l("Ask for a code first.")


def _resend_notice(wait_s: int) -> Text | None:
    """What the code page says when the cooldown kept a new code from being sent."""
    if not wait_s:
        return None
    return _ln(
        "A code was sent moments ago. You can ask for a new one in %(n)s second.",
        "A code was sent moments ago. You can ask for a new one in %(n)s seconds.",
        wait_s,
    )


@dataclass(frozen=True)
class CodeMethod:
    """One OTP method type: its type name, the channel it sends on, its URL and ``amr``."""

    method: str
    channel: str
    path: str  # e.g. /login/email-code
    amr: tuple[str, ...]
    template: str  # its code page

    def start_action(self, flow: Flow) -> str:
        return f"/{flow.issuer.id}{self.path}"

    def verify_action(self, flow: Flow) -> str:
        return f"/{flow.issuer.id}{self.path}/verify"

    def signup_action(self, flow: Flow) -> str:
        return f"/{flow.issuer.id}/signup{self.path.removeprefix('/login')}"

    def signup_url(self, flow: Flow) -> str:
        """The sign-up page (a link: it carries the request)."""
        return flow.page_url("signup" + self.path.removeprefix("/login"))

    def signup_offer(self, flow: Flow, method: AuthMethod, label: Text) -> Offer | None:
        if method.enabled_signup and signup_open(flow):
            return Offer(label, self.signup_url(flow), method.id, link=True)
        return None

    @property
    def username_type(self) -> str:
        return "email" if self.channel == "email" else "phone"

    def settings(self, method: AuthMethod) -> dict[str, Any]:
        return {**TYPES[self.method].defaults, **(method.settings or {})}

    def subject(self, key: str) -> str:
        """What the lockout counts on: this method and the identifier, account or not."""
        return f"{self.method}:{key}"

    def page(
        self,
        request: Request,
        flow: Flow,
        username: str,
        challenge: str,
        *,
        status: int = 200,
        error: Text | None = None,
        notice: Text | None = None,
        signup: bool = False,
    ) -> Response:
        start = self.signup_action(flow) if signup else self.start_action(flow)
        return flow.render(
            request,
            self.template,
            status,
            action=f"{start}/verify",
            resend_action=start,
            restart_url=flow.page_url("login"),
            username=username,
            challenge=challenge,
            error=error,
            notice=notice,
        )

    async def start(self, request: Request, flow: Flow, method: AuthMethod, username: str) -> Response:
        """Send a code for ``username`` (or hold it back during the cooldown) and show the code page."""
        limited = await rate_limited(request, flow.rt, flow.issuer, "login", TOO_MANY)
        if limited is not None:
            return limited
        key = users.login_key(username)
        user = await users.find_by_username(flow.session, flow.issuer.id, username)
        ttl_s = int(self.settings(method)["ttl"])
        sent = await delivery.send(
            request,
            flow.rt,
            flow.session,
            flow.issuer,
            purpose=otc.SIGN_IN,
            channel=self.channel,
            key=key,
            user=user,
            template="code",
            context=lambda issued: {"code": issued.code, "minutes": max(1, ttl_s // 60)},
            ttl_ms=ttl_s * 1000,
            request_id=flow.request_id,
            browser=flow.browser(),
            data={"method_id": method.id},
        )
        if isinstance(sent, Response):
            return sent
        notice = _resend_notice(sent.wait_s)
        challenge = sent.row.id if sent.row is not None else ""
        return self.page(request, flow, username, challenge, notice=notice)

    def _matches(
        self, row: OneTimeCode | None, flow: Flow, method: AuthMethod, purpose: str = otc.SIGN_IN
    ) -> bool:
        return (
            row is not None
            and row.issuer_id == flow.issuer.id
            and row.purpose == purpose
            and row.request_id == flow.request_id
            and row.browser == flow.browser()
            and row.data.get("method_id") == method.id
        )

    async def verify(self, request: Request, flow: Flow, method: AuthMethod) -> Response:
        username = flow.form.get("username", "").strip()[:MAX_IDENTIFIER]
        challenge = flow.form.get("challenge", "")[:64]
        limited = await rate_limited(request, flow.rt, flow.issuer, "login", TOO_MANY)
        if limited is not None:
            return limited
        row = await otc.get(flow.session, challenge) if challenge else None
        if row is None or not self._matches(row, flow, method):
            return self.page(request, flow, username, "", status=400, error=NO_CODE)
        code_id, key, user_id = row.id, str(row.data.get("key", "")), row.user_id
        policy = lockouts.Policy.of(flow.issuer)
        subject = self.subject(key)
        attempt = await lockouts.count_attempt(
            flow.session, flow.issuer.id, lockouts.ONE_TIME_CODE, subject, policy
        )
        if not attempt.allowed:
            error = flows.locked_text(attempt.locked_for_ms)
            return self.page(request, flow, username, code_id, status=400, error=error)
        max_attempts = int(self.settings(method)["max_attempts"])
        check = await otc.check_code(
            flow.session,
            flow.rt.secretbox,
            code_id=code_id,
            code=flow.form.get("code", ""),
            max_attempts=max_attempts,
            commit=False,
        )
        user = await users.lock(flow.session, user_id) if check.success and user_id is not None else None
        if user is None:
            await flow.session.commit()
            error = {"expired": EXPIRED, "used": EXPIRED, "too_many": SPENT}.get(check.error or "", WRONG)
            if attempt.number >= policy.max_failures:
                error = flows.locked_text(policy.duration_s * 1000)
            return self.page(request, flow, username, code_id, status=400, error=error)
        if user.status != "active" or user.issuer_id != flow.issuer.id:
            await flow.session.commit()
            return flow.message(request, SIGN_IN_UNAVAILABLE, _l("This account cannot sign in."), 403)
        await lockouts.clear(flow.session, flow.issuer.id, lockouts.ONE_TIME_CODE, subject)
        return await flow.passed(request, user, flows.factor(method.method, method.id, self.amr))

    # --- sign-up: the code proves the address the account is created with ---------------------

    def signup_page(
        self, request: Request, flow: Flow, *, error: Text | None = None, status: int = 200
    ) -> Response:
        return flow.render(
            request,
            "one_time_code_signup.html",
            status,
            action=self.signup_action(flow),
            login_url=flow.page_url("login"),
            username_type=self.username_type,
            username=flow.form.get("username", "")[:MAX_IDENTIFIER],
            name=flow.form.get("name", "")[:200],
            error=error,
        )

    async def signup_start(self, request: Request, flow: Flow, method: AuthMethod) -> Response:
        """Send a code to the address typed on the sign-up page (taken or not: the page that
        follows is the same, and only the owner of the address learns which it was)."""
        limited = await rate_limited(request, flow.rt, flow.issuer, "login", TOO_MANY)
        if limited is not None:
            return limited
        raw = flow.form.get("username", "").strip()[:MAX_IDENTIFIER]
        try:
            username = users.normalize_username(self.username_type, raw)
        except InvalidInput:
            error = (
                _l("Enter a valid email address.")
                if self.channel == "email"
                else _l("Enter a valid phone number, e.g. +4915112345678.")
            )
            return self.signup_page(request, flow, error=error, status=400)
        routed = await flow.realm(request, username.value)  # an organization's SSO creates its users
        if routed is not None:
            return routed
        if self.channel == "email" and not domain_allowed(flow, username.key):
            error = _l("Sign-up is not open to this email domain.")
            return self.signup_page(request, flow, error=error, status=400)
        ttl_s = int(self.settings(method)["ttl"])
        sent = await delivery.send(
            request,
            flow.rt,
            flow.session,
            flow.issuer,
            purpose=otc.SIGN_UP,
            channel=self.channel,
            key=username.key,
            user=None,
            to=username.value,
            template="code",
            context=lambda issued: {"code": issued.code, "minutes": max(1, ttl_s // 60)},
            ttl_ms=ttl_s * 1000,
            request_id=flow.request_id,
            browser=flow.browser(),
            data={
                "method_id": method.id,
                "username": username.value,
                "name": flow.form.get("name", "").strip()[:200],
            },
        )
        if isinstance(sent, Response):
            return sent
        notice = _resend_notice(sent.wait_s)
        challenge = sent.row.id if sent.row is not None else ""
        return self.page(request, flow, username.value, challenge, notice=notice, signup=True)

    async def signup_verify(self, request: Request, flow: Flow, method: AuthMethod) -> Response:
        username = flow.form.get("username", "").strip()[:MAX_IDENTIFIER]
        challenge = flow.form.get("challenge", "")[:64]
        limited = await rate_limited(request, flow.rt, flow.issuer, "login", TOO_MANY)
        if limited is not None:
            return limited
        row = await otc.get(flow.session, challenge) if challenge else None
        if row is None or not self._matches(row, flow, method, otc.SIGN_UP):
            return self.page(request, flow, username, "", status=400, error=NO_CODE, signup=True)
        code_id, data = row.id, dict(row.data)
        subject = self.subject(f"signup:{data.get('key', '')}")
        policy = lockouts.Policy.of(flow.issuer)
        attempt = await lockouts.count_attempt(
            flow.session, flow.issuer.id, lockouts.ONE_TIME_CODE, subject, policy
        )
        if not attempt.allowed:
            error = flows.locked_text(attempt.locked_for_ms)
            return self.page(request, flow, username, code_id, status=400, error=error, signup=True)
        check = await otc.check_code(
            flow.session,
            flow.rt.secretbox,
            code_id=code_id,
            code=flow.form.get("code", ""),
            max_attempts=int(self.settings(method)["max_attempts"]),
            commit=False,
        )
        if not check.success:
            await flow.session.commit()
            error = {"expired": EXPIRED, "used": EXPIRED, "too_many": SPENT}.get(check.error or "", WRONG)
            return self.page(request, flow, username, code_id, status=400, error=error, signup=True)
        await lockouts.clear(flow.session, flow.issuer.id, lockouts.ONE_TIME_CODE, subject)
        user = await signups.create(
            flow.session,
            flow.issuer,
            self.username_type,
            str(data.get("username", "")),
            str(data.get("name", "")),
        )
        if user is None:
            # The address proved to be the person's own: telling them it has an account is safe.
            text = _l("An account already uses this address. Sign in with it instead.")
            return flow.message(request, _l("Account exists"), text, 409)
        if user.status != "active":
            text = _l("Your account was created and waits for approval. You can sign in once it is approved.")
            return flow.message(request, _l("Waiting for approval"), text, 200)
        return await flow.passed(request, user, flows.factor(method.method, method.id, self.amr))

    def routes(self) -> Routes:
        router = Routes()

        async def method_for(flow: Flow, request: Request, signup: bool) -> AuthMethod | Response:
            """The issuer's method of this type, switched on for sign-in (or sign-up)."""
            if signup:
                method = await flow.method_for_signup(self.method)
                if method is None or not signup_open(flow):
                    text = _l("This application does not accept sign-ups this way.")
                    return flow.message(request, _l("Sign-up closed"), text, 403)
                return method
            method = await flow.method_of_type(self.method)
            if method is None:
                return flow.message(request, SIGN_IN_UNAVAILABLE, _l("This sign-in method is switched off."))
            return method

        @router.post("/{issuer_id}" + self.path)
        async def start_route(issuer_id: str, request: Request) -> Response:
            async with runtime(request).sessions() as session:
                flow = await flows.load_sign_in(request, session, issuer_id, post=True)
                if isinstance(flow, Response):
                    return flow
                method = await method_for(flow, request, False)
                if isinstance(method, Response):
                    return method
                username = flow.form.get("username", "").strip()[:MAX_IDENTIFIER]
                if not username:
                    return flow.message(
                        request, _l("Sign-in expired"), _l("Start again and enter your identifier.")
                    )
                return await self.start(request, flow, method, username)

        @router.post("/{issuer_id}" + self.path + "/verify")
        async def verify_route(issuer_id: str, request: Request) -> Response:
            async with runtime(request).sessions() as session:
                flow = await flows.load_sign_in(request, session, issuer_id, post=True)
                if isinstance(flow, Response):
                    return flow
                method = await method_for(flow, request, False)
                if isinstance(method, Response):
                    return method
                return await self.verify(request, flow, method)

        signup_path = "/{issuer_id}/signup" + self.path.removeprefix("/login")

        @router.get(signup_path)
        @router.post(signup_path)
        async def signup_route(issuer_id: str, request: Request) -> Response:
            post = request.method == "POST"
            async with runtime(request).sessions() as session:
                flow = await flows.load_sign_in(request, session, issuer_id, post=post)
                if isinstance(flow, Response):
                    return flow
                method = await method_for(flow, request, True)
                if isinstance(method, Response):
                    return method
                if not post:
                    return self.signup_page(request, flow)
                return await self.signup_start(request, flow, method)

        @router.post(signup_path + "/verify")
        async def signup_verify_route(issuer_id: str, request: Request) -> Response:
            async with runtime(request).sessions() as session:
                flow = await flows.load_sign_in(request, session, issuer_id, post=True)
                if isinstance(flow, Response):
                    return flow
                method = await method_for(flow, request, True)
                if isinstance(method, Response):
                    return method
                return await self.signup_verify(request, flow, method)

        return router


def signup_open(flow: Flow) -> bool:
    """Sign-up and the login portal it leads to are on, and the access mode lets anyone ask (the
    method's own ``enabled_signup`` is checked by ``method_for_signup``)."""
    settings = flow.issuer.settings
    return (
        portal_enabled(settings, "signup")
        and portal_enabled(settings, "login")
        and settings["access"]["mode"] in ("open", "approval")
    )


def domain_allowed(flow: Flow, email_key: str) -> bool:
    domains = [d.lower() for d in flow.issuer.settings["access"].get("allowed_email_domains") or []]
    return not domains or email_key.rsplit("@", 1)[-1] in domains
