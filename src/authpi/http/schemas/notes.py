from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from authpi.http.schemas.common import StrictInput
from authpi.services.notes import MAX_CONTENT, NoteView

SubjectType = Literal["user", "org", "issuer", "client", "agent"]
RefType = Literal["user", "org", "issuer", "client", "webhook", "api_key"]


class NoteCreate(StrictInput):
    subject_type: SubjectType
    subject_id: str = Field(min_length=1, max_length=64)
    issuer_id: str | None = Field(default=None, min_length=1, max_length=64)
    content: str = Field(min_length=1, max_length=MAX_CONTENT)
    pinned: bool | None = None


class NoteUpdate(StrictInput):
    content: str | None = Field(default=None, min_length=1, max_length=MAX_CONTENT)
    pinned: bool | None = None


class NoteMentionOut(BaseModel):
    mentioned_user_id: str
    created_at: int


class NoteReferenceOut(BaseModel):
    ref_type: RefType
    ref_id: str
    ref_issuer_id: str | None
    created_at: int


class NoteOut(BaseModel):
    id: str
    account_id: str
    issuer_id: str | None
    subject_type: SubjectType
    subject_id: str
    content: str
    pinned: bool
    created_by: str
    updated_by: str | None
    created_at: int
    updated_at: int | None
    mentions: list[NoteMentionOut]
    references: list[NoteReferenceOut]

    @classmethod
    def of(cls, view: NoteView) -> NoteOut:
        note = view.note
        return cls(
            id=note.id,
            account_id=note.account_id,
            issuer_id=note.issuer_id,
            subject_type=note.subject_type,  # type: ignore[arg-type]
            subject_id=note.subject_id,
            content=note.content,
            pinned=note.pinned,
            created_by=note.created_by,
            updated_by=note.updated_by,
            created_at=note.created_at,
            updated_at=note.updated_at,
            mentions=[
                NoteMentionOut(mentioned_user_id=m.mentioned_user_id, created_at=m.created_at)
                for m in view.mentions
            ],
            references=[
                NoteReferenceOut(
                    ref_type=r.ref_type,  # type: ignore[arg-type]
                    ref_id=r.ref_id,
                    ref_issuer_id=r.ref_issuer_id,
                    created_at=r.created_at,
                )
                for r in view.references
            ],
        )


class NotesCountOut(BaseModel):
    count: int


class BacklinksOut(BaseModel):
    """Exactly ``{"data": [...]}``: authpi-admin 1.4.0 crashes on any sibling key (§A.13 item 5)."""

    data: list[NoteOut]
