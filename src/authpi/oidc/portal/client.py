"""The portal as the sign-in's client: signing in to the portal (or again, before a sensitive
change) is a pending authorization request like any other, so every sign-in method, second
factor and protection of the hosted pages applies unchanged. Its client is not a registered one:
``PORTAL_CLIENT`` can never be a client ID (those start with ``c_``), it is built here and never
stored, and the sign-in ends with a redirect back to the portal instead of a code."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from authpi.oidc import authorization
from authpi.oidc.authorization import AuthorizeParams
from authpi.storage.tables.clients import Client
from authpi.storage.tables.issuers import Issuer

PORTAL_CLIENT = "account"


def portal_client(issuer: Issuer) -> Client:
    """The stand-in client of a portal sign-in (never added to a database session)."""
    return Client(
        id=PORTAL_CLIENT,
        issuer_id=issuer.id,
        name="your account",
        type="web",
        application_type="web",
        confidential=False,
        status="active",
        scopes=[],
        # No codes and no organizations: the result of such a sign-in is the browser session.
        settings={"openid": {"organizations": {"mode": "none"}, "grant_types": []}},
        metadata_={},
        created_at=0,
        updated_at=0,
    )


def home(issuer_id: str, section: str = "") -> str:
    return f"/{issuer_id}/account{section}"


def is_portal_return(issuer_id: str, target: str) -> bool:
    """Whether ``target`` is one of this issuer's own pages a portal sign-in may return to: the
    account portal, or an invitation."""
    return (
        target == home(issuer_id)
        or target.startswith(home(issuer_id, "/"))
        or target.startswith(f"/{issuer_id}/invitations/")
    )


async def sign_in_request(
    session: AsyncSession,
    issuer: Issuer,
    *,
    back_to: str,
    again_as: str | None = None,
    invited_email: str | None = None,
) -> str:
    """A pending sign-in that returns to ``back_to`` (a portal or invitation page). ``again_as``:
    the username of the signed-in user, who must prove it anew (``prompt=login``) before a
    sensitive change; ``invited_email``: the address an invitation was sent to (the login hint, and
    the address sign-up may use on an invite-only issuer)."""
    params = AuthorizeParams(
        client_id=PORTAL_CLIENT,
        redirect_uri=back_to if is_portal_return(issuer.id, back_to) else home(issuer.id),
        scope=["openid"],
        state=None,
        nonce=None,
        code_challenge=None,
        prompt=["login"] if again_as is not None else [],
        max_age=None,
        login_hint=again_as or invited_email,
        org=None,
        invited_email=invited_email,
    )
    return await authorization.remember(session, issuer, params)
