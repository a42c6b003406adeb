"""Parameter types shared by every Core API route."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path
from sqlalchemy.ext.asyncio import AsyncSession

from authpi.http.auth import db_session

Session = Annotated[AsyncSession, Depends(db_session)]
IfMatch = Annotated[
    str | None, Header(alias="If-Match", description="Strong ETag from a previous response", max_length=256)
]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="Makes a retried POST or PATCH safe (24 h)", max_length=256),
]
AccountId = Annotated[str, Path(max_length=64, description="The unique identifier of the account")]
IssuerId = Annotated[str, Path(max_length=64, description="The unique identifier of the issuer")]
