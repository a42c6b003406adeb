"""Work that must follow a commit (forgetting cached rows, say), registered where the change is made.

Services flush their changes and leave the commit to whoever owns the transaction (a Core API
request commits once, together with its idempotency record); what they register here runs only if
and when that transaction commits, and is dropped if it rolls back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

_KEY = "authpi_after_commit"


def after_commit(session: AsyncSession, action: Callable[[], None]) -> None:
    session.sync_session.info.setdefault(_KEY, []).append(action)


def on_commit(session: Session, action: Callable[[], None]) -> None:
    """``after_commit`` from inside SQLAlchemy's synchronous hooks (e.g. a mapper event); an action
    already registered for this transaction is not added twice."""
    actions = session.info.setdefault(_KEY, [])
    if action not in actions:
        actions.append(action)


@event.listens_for(Session, "after_commit")
def _run(session: Session) -> None:
    for action in session.info.pop(_KEY, []):
        action()


@event.listens_for(Session, "after_rollback")
def _drop(session: Session, *_: Any) -> None:
    session.info.pop(_KEY, None)
