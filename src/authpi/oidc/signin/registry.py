"""Every sign-in strategy, by auth-method type, and the ones an issuer has switched on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.routing import Route

from authpi.oidc.context import load_auth_methods
from authpi.oidc.signin.methods.apple import APPLE
from authpi.oidc.signin.methods.backup_codes import BACKUP_CODES
from authpi.oidc.signin.methods.email_link import EMAIL_LINK
from authpi.oidc.signin.methods.email_otp import EMAIL_OTP
from authpi.oidc.signin.methods.github import GITHUB
from authpi.oidc.signin.methods.oauth2 import OAUTH2
from authpi.oidc.signin.methods.oauth2_manual import OAUTH2_MANUAL
from authpi.oidc.signin.methods.oidc import OIDC
from authpi.oidc.signin.methods.passkey import PASSKEY
from authpi.oidc.signin.methods.password import PASSWORD
from authpi.oidc.signin.methods.sms_otp import SMS_OTP
from authpi.oidc.signin.methods.totp import TOTP
from authpi.oidc.signin.steps import Step
from authpi.oidc.signin.strategy import Strategy
from authpi.services.auth_method_types import TYPES
from authpi.storage.tables.auth_methods import AuthMethod

STRATEGIES: dict[str, Strategy] = {
    strategy.method: strategy
    for strategy in (
        PASSWORD,
        PASSKEY,
        TOTP,
        BACKUP_CODES,
        EMAIL_LINK,
        EMAIL_OTP,
        SMS_OTP,
        OIDC,
        OAUTH2,
        GITHUB,
        APPLE,
        OAUTH2_MANUAL,
    )
}
assert set(STRATEGIES) <= set(TYPES), "every strategy implements a known auth-method type"


def routes() -> list[Route]:
    return [route for strategy in STRATEGIES.values() for route in strategy.router.routes]


def template_dirs() -> list[Path]:
    return [s.templates for s in STRATEGIES.values() if s.templates is not None]


async def enabled(
    session: AsyncSession, issuer_id: str, step: Step, *, signup: bool = False
) -> list[tuple[AuthMethod, Strategy]]:
    """The issuer's methods switched on for sign-in (or sign-up) whose strategy serves ``step``,
    featured ones first, then in the order they were added."""
    return list(_serving(await load_auth_methods(session, issuer_id), step, signup))


def _serving(rows: Sequence[AuthMethod], step: Step, signup: bool) -> Iterator[tuple[AuthMethod, Strategy]]:
    for row in rows:
        strategy = STRATEGIES.get(row.method)
        if strategy is None or step not in strategy.steps:
            continue
        if row.enabled_signup if signup else row.enabled_login:
            yield row, strategy


async def method_of(
    session: AsyncSession, issuer_id: str, method_id: str
) -> tuple[AuthMethod, Strategy] | None:
    """The issuer's method ``method_id`` with its strategy, when it has one."""
    if not method_id or len(method_id) > 64:
        return None
    row = await session.get(AuthMethod, method_id)
    if row is None or row.issuer_id != issuer_id or row.method not in STRATEGIES:
        return None
    return row, STRATEGIES[row.method]
