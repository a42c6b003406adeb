from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.responses import Response

from authpi.http import unit_of_work
from authpi.http.auth import require
from authpi.http.envelopes import Envelope, single
from authpi.http.schemas.common import ERRORS
from authpi.http.schemas.me import CallerAccountAccess, CallerIdentity
from authpi.services.principal import Principal

router = unit_of_work.router(tags=["me"])


@router.get("/v1/me", response_model=Envelope[CallerIdentity], responses=ERRORS, summary="Caller identity")
async def who_am_i(principal: Annotated[Principal, Depends(require(None))]) -> Response:
    identity = CallerIdentity(
        type="api_key",
        key_id=principal.key_id,
        user_id=None,
        issuer_id=None,
        accounts=[
            CallerAccountAccess(
                account_id=principal.account_id, org_id=principal.org_id, scopes=list(principal.scopes)
            )
        ],
        organizations=[],
    )
    return single(identity, None)
