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

from authpi.oidc.context import runtime
from authpi.oidc.pages import rate_limited
from authpi.oidc.routes import Routes
from authpi.oidc.signin import delivery
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin.flow import SIGN_IN_UNAVAILABLE, TOO_MANY, Flow
from authpi.services import lockouts, users
from authpi.services import one_time_codes as otc
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.one_time_codes import OneTimeCode

MAX_IDENTIFIER = 320
WRONG = "That code is not right. Check it and try again."
EXPIRED = "That code has expired. Ask for a new one."
SPENT = "Too many wrong codes. Ask for a new one."
NO_CODE = "Ask for a code first."


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

    def settings(self, method: AuthMethod) -> dict[str, Any]:
        from authpi.services.auth_method_types import TYPES

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
        error: str | None = None,
        notice: str | None = None,
    ) -> Response:
        return flow.render(
            request,
            self.template,
            status,
            action=self.verify_action(flow),
            resend_action=self.start_action(flow),
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
        notice = None
        if sent.wait_s:
            notice = f"A code was sent moments ago. You can ask for a new one in {sent.wait_s} seconds."
        challenge = sent.row.id if sent.row is not None else ""
        return self.page(request, flow, username, challenge, notice=notice)

    def _matches(self, row: OneTimeCode | None, flow: Flow, method: AuthMethod) -> bool:
        return (
            row is not None
            and row.issuer_id == flow.issuer.id
            and row.purpose == otc.SIGN_IN
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
            return flow.message(request, SIGN_IN_UNAVAILABLE, "This account cannot sign in.", 403)
        await lockouts.clear(flow.session, flow.issuer.id, lockouts.ONE_TIME_CODE, subject)
        return await flow.passed(request, user, flows.factor(method.method, method.id, self.amr))

    def routes(self) -> Routes:
        router = Routes()

        @router.post("/{issuer_id}" + self.path)
        async def start_route(issuer_id: str, request: Request) -> Response:
            async with runtime(request).sessions() as session:
                flow = await flows.load_sign_in(request, session, issuer_id, post=True)
                if isinstance(flow, Response):
                    return flow
                method = await flow.method_of_type(self.method)
                if method is None:
                    return flow.message(request, SIGN_IN_UNAVAILABLE, "This sign-in method is switched off.")
                username = flow.form.get("username", "").strip()[:MAX_IDENTIFIER]
                if not username:
                    return flow.message(request, "Sign-in expired", "Start again and enter your identifier.")
                return await self.start(request, flow, method, username)

        @router.post("/{issuer_id}" + self.path + "/verify")
        async def verify_route(issuer_id: str, request: Request) -> Response:
            async with runtime(request).sessions() as session:
                flow = await flows.load_sign_in(request, session, issuer_id, post=True)
                if isinstance(flow, Response):
                    return flow
                method = await flow.method_of_type(self.method)
                if method is None:
                    return flow.message(request, SIGN_IN_UNAVAILABLE, "This sign-in method is switched off.")
                return await self.verify(request, flow, method)

        return router
