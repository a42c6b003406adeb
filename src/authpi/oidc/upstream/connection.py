"""What the shared upstream machinery signs users in through: an auth method of the issuer (its
button) or an organization's SSO connection (home-realm discovery). Both travel the same way (the
routes' ``go_upstream`` and ``answer``); they differ in their provider, where they come back and
what the identity they bring back signs in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from authpi.oidc.upstream.provider import Context, Identity, Provider

if TYPE_CHECKING:
    from authpi.oidc.signin.flow import Flow

SignIn = Callable[[Request, "Flow", Identity, dict[str, Any]], Awaitable[Response]]
# The page for a provider that cannot be reached (its discovery failed or timed out), given why.
Unreachable = Callable[[Request, "Flow", str], Awaitable[Response]]


@dataclass(frozen=True)
class Connection:
    """One upstream provider for one sign-in: its name (on pages), what talks to it, this sign-in's
    view of its settings, and what signs in the identity it vouches for. The pending request
    remembers the method or the organization (exactly one) so the callback finds it again."""

    name: str
    provider: Provider
    context: Context
    sign_in: SignIn
    method_id: str | None = None
    org_id: str | None = None
    # Without it, the shared "sign-in failed" page.
    unreachable: Unreachable | None = None
