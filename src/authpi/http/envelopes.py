"""Response envelopes (A.6): ``{"data": X}`` with a strong ETag, and paginated lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    data: T


class Page(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None


def single(item: BaseModel | dict[str, Any], etag: str | None, status: int = 200) -> Response:
    payload = item.model_dump(mode="json") if isinstance(item, BaseModel) else item
    headers = {"ETag": etag} if etag else None
    return JSONResponse({"data": payload}, status_code=status, headers=headers)


def page(items: Sequence[BaseModel], has_more: bool, next_cursor: str | None) -> Response:
    return JSONResponse(
        {
            "data": [item.model_dump(mode="json") for item in items],
            "has_more": has_more,
            "next_cursor": next_cursor if has_more else None,
        }
    )


def no_content() -> Response:
    return Response(status_code=204)
