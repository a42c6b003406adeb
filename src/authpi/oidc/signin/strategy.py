"""The interface every sign-in method implements."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from starlette.requests import Request
from starlette.responses import Response

from authpi.oidc.routes import Routes
from authpi.oidc.signin.steps import Offer, Step
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.users import User

if TYPE_CHECKING:
    from authpi.oidc.signin.flow import Flow


class Strategy:
    """One auth-method type at sign-in (Kratos-style strategy).

    A strategy declares the ``steps`` it serves, the ``amr`` values a factor from it proves, its
    routes (``router``) and its templates (``templates/<method>/`` next to its module). The flow asks
    it what it ``offer``s on each page and ``start``s it when the user picks it; its own routes call
    ``Flow.passed`` once its factor is proven."""

    method: ClassVar[str]
    steps: ClassVar[frozenset[Step]]
    amr: ClassVar[tuple[str, ...]]
    router: ClassVar[Routes]
    templates: ClassVar[Path | None] = None
    # A stand-in for the other second factors (backup codes): offered after them, and never on its
    # own a reason to ask for a second factor.
    fallback: ClassVar[bool] = False

    async def offer(
        self,
        step: Step,
        flow: Flow,
        method: AuthMethod,
        *,
        identifier: str | None = None,
        user: User | None = None,
    ) -> Offer | None:
        """What this method offers for ``step`` on the current page, if anything.

        For ``FIRST_FACTOR`` without an identifier: an entry on the first page (a social button,
        "sign in with a passkey"); with one: a way to prove it. For ``SECOND_FACTOR``: a way for
        ``user`` to add assurance (only if the user has this factor)."""
        return None

    async def start(
        self, request: Request, flow: Flow, method: AuthMethod, *, identifier: str | None = None
    ) -> Response:
        """The first page of this method once the user picked it. On ``/mfa`` and ``/mfa/enroll``
        the user is ``flow.progress.user_id`` and ``flow.others_url`` (if set) lists the other
        choices."""
        raise NotImplementedError(f"{self.method} does not start from a picker")

    async def enrolled(self, flow: Flow, method: AuthMethod, user: User) -> bool:
        """Whether ``user`` has this factor set up (so it can be asked for as a second factor)."""
        return False
