from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.responses import Response

from authpi.http import unit_of_work
from authpi.http.auth import require, runtime
from authpi.http.envelopes import Envelope, single
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, IssuerId, Session
from authpi.http.schemas.common import ERRORS
from authpi.http.schemas.tokens import IntrospectIn, IntrospectOut
from authpi.oidc.context import issuer_url
from authpi.runtime import Runtime
from authpi.services import issuers, token_introspection
from authpi.services.principal import Principal

router = unit_of_work.router(prefix="/v1/accounts/{account_id}/issuers/{issuer_id}/tokens", tags=["tokens"])


@router.post(
    "/introspect", response_model=Envelope[IntrospectOut], responses=ERRORS, summary="Introspect Token"
)
async def introspect(
    account_id: AccountId,
    issuer_id: IssuerId,
    body: IntrospectIn,
    _: Annotated[Principal, Depends(require("issuers.tokens:read"))],
    session: Session,
    rt: Annotated[Runtime, Depends(runtime)],
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    issuer = await issuers.get_issuer(session, account_id, issuer_id)
    result = await token_introspection.introspect(
        session, rt.keys, account_id, issuer, issuer_url(rt, issuer_id), body.token, body.ip
    )
    return single(result, None)
