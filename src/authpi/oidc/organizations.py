"""Organizations in the IdP (idp-api §D.1, decision 18): the ``organizations`` claim, the selected
organization (``org=``) and the hosted organization picker.

The claim lists the user's active memberships of active organizations, then the client's
restriction (``settings.openid.organizations``: all, none or an allowlist). A selected-org token
set carries only that organization and ``org_id``; every code exchange and refresh re-reads the
memberships, so one that ended fails with ``invalid_grant``. A client whose restriction says
``required: true`` always gets a selected organization: the user's only one, or the one they pick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from authpi.oidc.authorization import AuthorizeParams
from authpi.oidc.context import openid
from authpi.oidc.errors import invalid_grant
from authpi.services import organizations
from authpi.services.organizations import TokenMembership
from authpi.storage.tables.clients import Client

NOT_A_MEMBER = "The user is not a member of that organization"


async def visible(session: AsyncSession, client: Client, user_id: str) -> list[TokenMembership]:
    """The memberships ``client`` may see of ``user_id`` (one query)."""
    found = await organizations.token_memberships(session, user_id)
    return organizations.restricted(found, openid(client).get("organizations"))


async def claim(
    session: AsyncSession, client: Client, user_id: str, org_id: str | None, *, any_membership: bool = True
) -> list[dict[str, Any]]:
    """The ``organizations`` claim for a new token set; ``invalid_grant`` when the selected
    organization is no longer among them (decision 18). ``any_membership=False``: the caller read
    ``organizations.has_token_memberships`` as false, so there is nothing to query."""
    found = await visible(session, client, user_id) if any_membership else []
    if org_id is not None:
        found = [m for m in found if m.org_id == org_id]
        if not found:
            raise invalid_grant("The user is no longer a member of the selected organization")
    return [m.claim() for m in found]


def required(client: Client) -> bool:
    return (openid(client).get("organizations") or {}).get("required") is True


@dataclass(frozen=True)
class Step:
    """What the selected-organization rules say before a code is issued: go on (possibly with the
    organization now selected), refuse (``error``), or let the user pick among ``choices``."""

    error: tuple[str, str] | None = None
    choices: list[TokenMembership] | None = None


async def before_code(session: AsyncSession, client: Client, params: AuthorizeParams, user_id: str) -> Step:
    if params.org is None and not required(client):
        return Step()
    found = await visible(session, client, user_id)
    if params.org is not None:
        return Step() if any(m.org_id == params.org for m in found) else Step(("access_denied", NOT_A_MEMBER))
    if not found:
        return Step(("access_denied", "This application needs an organization and the user belongs to none"))
    if len(found) == 1:
        params.org = found[0].org_id
        return Step()
    return Step(choices=found)
