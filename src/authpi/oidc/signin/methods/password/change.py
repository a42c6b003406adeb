"""Choosing a new password after a temporary one (decision 30): ``POST /{issuer_id}/login/password/change``.

A temporary password proves nothing on its own. Once it is typed right, the flow owes this step
(``Flow.owe``) with no factor proven, so no session, code or token can exist until the user has
chosen a new password that meets the policy; then the password counts as this sign-in's first
factor and the sign-in goes on as any other (second factor, consent, code). The step is bound to
the browser that typed the temporary password and to that very temporary password: an
administrator setting another one in between ends it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authpi.clock import now_ms
from authpi.crypto import hashing, passwords
from authpi.i18n import Text, _l
from authpi.oidc.context import runtime
from authpi.oidc.pages import rate_limited
from authpi.oidc.routes import Routes
from authpi.oidc.signin import flow as flows
from authpi.oidc.signin.flow import Flow
from authpi.oidc.signin.methods.password import credentials
from authpi.services import users
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.users import User

router = Routes()
STEP = "change_password"
AMR = ("pwd",)
MAX_PASSWORD = 1024


def action(flow: Flow) -> str:
    return f"/{flow.issuer.id}/login/password/change"


def change_page(
    request: Request, flow: Flow, method: AuthMethod, *, error: Text | None = None, status: int = 200
) -> Response:
    policy = credentials.password_policy(method)
    return flow.render(
        request,
        "password/change.html",
        status,
        action=action(flow),
        restart_url=flow.page_url("login"),
        min_length=policy["min_length"],
        max_length=policy["max_length"],
        error=error,
    )


async def required(request: Request, flow: Flow, user: User, method: AuthMethod) -> Response:
    """The temporary password of ``user`` was right: owe the change, then ask for it."""
    assert user.password_hash is not None
    await flow.owe(user, "password", STEP, method_id=method.id, temporary=hashing.digest(user.password_hash))
    await flow.session.commit()
    return change_page(request, flow, method)


async def problem(method: AuthMethod, temporary_hash: str, password: str, confirm: str) -> Text | None:
    """What is wrong with the new password, if anything."""
    if password != confirm:
        return _l("The two passwords do not match.")
    policy = credentials.password_policy(method)
    found = users.policy_problems(policy, password)
    if found:
        return credentials.policy_text(found[0], policy)
    if await passwords.verify_password(temporary_hash, password):
        return _l("Choose a password other than the temporary one.")
    return None


@router.post("/{issuer_id}/login/password/change")
async def change_password(issuer_id: str, request: Request) -> Response:
    async with runtime(request).sessions() as session:
        flow = await flows.load_sign_in(request, session, issuer_id, post=True)
        if isinstance(flow, Response):
            return flow
        owed = flow.owed("password", STEP)
        if owed is None:
            return flow.expired(request)
        text = _l("Too many sign-in attempts. Wait and retry.")
        limited = await rate_limited(request, flow.rt, flow.issuer, "login", text)
        if limited is not None:
            return limited
        method = await credentials.password_method(session, flow.issuer.id)
        user = await session.get(User, str(owed["user_id"]))
        temporary = user.password_hash if user is not None else None
        if (
            method is None
            or not method.enabled_login
            or user is None
            or user.issuer_id != flow.issuer.id
            or user.status != "active"
            or temporary is None
            or not hashing.matches(temporary, str(owed.get("temporary", "")))
            or (user.password_temporary_until or 0) <= now_ms()
        ):
            return flow.expired(request)
        password = flow.form.get("password", "")[:MAX_PASSWORD]
        wrong = await problem(method, temporary, password, flow.form.get("confirm", "")[:MAX_PASSWORD])
        if wrong is not None:
            return change_page(request, flow, method, error=wrong, status=400)
        new_hash = await passwords.hash_password(password)
        if not await users.replace_password(session, user, temporary, new_hash, temporary=True):
            await session.rollback()
            return flow.expired(request)  # changed meanwhile (another tab, an administrator)
        return await flow.passed(request, user, flows.factor("password", method.id, AMR))
