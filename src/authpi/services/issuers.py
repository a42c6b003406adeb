"""Issuers: identity providers with isolated user pools (seed 001)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, case, false, func, literal, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.services import events, issuer_settings, versions
from authpi.services.errors import InvalidInput, NotFound
from authpi.storage import invalidation
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.clients import Client
from authpi.storage.tables.issuers import Issuer

STATUSES = ("active", "disabled", "suspended", "deleted")
READINESS = ("ready", "needs_auth_method", "needs_client", "disabled")
SECOND_FACTORS = ("totp", "backup_codes")


def _count(*conditions: Any) -> Any:
    return (
        select(func.count())
        .select_from(AuthMethod)
        .where(AuthMethod.issuer_id == Issuer.id, *conditions)
        .correlate(Issuer)
        .scalar_subquery()
    )


def _client_count() -> Any:
    return (
        select(func.count())
        .select_from(Client)
        .where(Client.issuer_id == Issuer.id, Client.status == "active")
        .correlate(Issuer)
        .scalar_subquery()
    )


def auth_method_count() -> Any:
    return _count()


def login_count() -> Any:
    return _count(AuthMethod.enabled_login == true())


def signup_count() -> Any:
    return _count(AuthMethod.enabled_signup == true())


def readiness_expression() -> Any:
    return case(
        (Issuer.status != "active", literal("disabled")),
        # Second factors (TOTP, backup codes) cannot sign anybody in on their own.
        (
            _count(AuthMethod.enabled_login == true(), AuthMethod.method.not_in(SECOND_FACTORS)) == 0,
            literal("needs_auth_method"),
        ),
        (_client_count() == 0, literal("needs_client")),
        else_=literal("ready"),
    )


@dataclass(frozen=True)
class IssuerSummary:
    issuer: Issuer
    auth_method_count: int
    enabled_login_method_count: int
    enabled_signup_method_count: int
    readiness: str


def _validate_scopes(scopes: list[str] | None) -> list[str]:
    values = list(dict.fromkeys(scopes or []))
    for scope in values:
        if not scope or any(ch.isspace() for ch in scope) or len(scope) > 200:
            raise InvalidInput.on("available_scopes", "invalid_scope", f"'{scope}' is not a valid scope name")
    return values


async def create_issuer(session: AsyncSession, account_id: str, body: dict[str, Any]) -> Issuer:
    status = body.get("status") or "active"
    if status == "deleted":
        raise InvalidInput.on("status", "invalid_choice", "An issuer cannot be created deleted")
    settings = issuer_settings.build(body.get("settings"))
    now = now_ms()
    issuer = Issuer(
        id=ids.issuer_id(),
        account_id=account_id,
        name=body["name"],
        description=body.get("description"),
        links=body.get("links"),
        available_scopes=_validate_scopes(body.get("available_scopes")),
        status=status,
        status_at=now,
        settings=settings,
        access_mode=settings["access"]["mode"],
        metadata_=body.get("metadata") or {},
        created_at=now,
        updated_at=now,
    )
    session.add(issuer)
    await session.flush()
    await events.emit_for(
        session, "issuer.created", issuer, "issuer", account_id=account_id, issuer_id=issuer.id
    )
    return issuer


async def get_issuer(
    session: AsyncSession, account_id: str, issuer_id: str, *, for_update: bool = False
) -> Issuer:
    stmt = select(Issuer).where(
        Issuer.id == issuer_id, Issuer.account_id == account_id, Issuer.status != "deleted"
    )
    if for_update:
        stmt = versions.for_update(stmt)
    issuer = await session.scalar(stmt)
    if issuer is None:
        raise NotFound("Issuer")
    return issuer


def list_statement(
    account_id: str,
    *,
    q: str | None = None,
    status: str | None = None,
    access_mode: str | None = None,
    readiness: str | None = None,
) -> Select[Any]:
    readiness_col = readiness_expression()
    stmt = select(
        Issuer,
        auth_method_count(),
        login_count(),
        signup_count(),
        readiness_col,
    ).where(Issuer.account_id == account_id)
    stmt = stmt.where(Issuer.status == status) if status else stmt.where(Issuer.status != "deleted")
    if q:
        stmt = stmt.where(or_(Issuer.name.icontains(q, autoescape=True), Issuer.id == q))
    if access_mode:
        stmt = stmt.where(Issuer.access_mode == access_mode)
    if readiness:
        stmt = stmt.where(readiness_col == readiness) if readiness in READINESS else stmt.where(false())
    return stmt


def summarize(row: Any) -> IssuerSummary:
    issuer, am_count, login, signup, ready = row
    return IssuerSummary(issuer, int(am_count), int(login), int(signup), str(ready))


async def update_issuer(
    session: AsyncSession, account_id: str, issuer_id: str, changes: dict[str, Any], if_match: str | None
) -> Issuer:
    issuer = await get_issuer(session, account_id, issuer_id, for_update=True)
    await versions.claim(session, issuer, "Issuer", if_match)
    if "name" in changes and changes["name"] is None:
        raise InvalidInput.on("name", "required", "name cannot be null")
    for field in ("name", "description", "links"):
        if field in changes:
            setattr(issuer, field, changes[field])
    if "available_scopes" in changes:
        issuer.available_scopes = _validate_scopes(changes["available_scopes"])
    if "metadata" in changes:
        issuer.metadata_ = changes["metadata"] or {}
    if changes.get("settings") is not None:
        issuer.settings = issuer_settings.build(changes["settings"], issuer.settings)
        issuer.access_mode = issuer.settings["access"]["mode"]
    now = now_ms()
    if changes.get("status") and changes["status"] != issuer.status:
        issuer.status = changes["status"]
        issuer.status_at = now
        if issuer.status == "deleted":
            issuer.deleted_at = now
    await session.flush()
    kind = "issuer.deleted" if issuer.status == "deleted" else "issuer.updated"
    await events.emit_for(session, kind, issuer, "issuer", account_id=account_id, issuer_id=issuer.id)
    await invalidation.evict_everywhere(session, "issuer", issuer.id)
    return issuer


async def delete_issuer(session: AsyncSession, account_id: str, issuer_id: str, if_match: str | None) -> None:
    await update_issuer(session, account_id, issuer_id, {"status": "deleted"}, if_match)
