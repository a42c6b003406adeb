"""Auth methods of an issuer: create with per-type rules, read without secrets, partial update."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto.secretbox import SecretBox
from authpi.services import events, versions
from authpi.services.auth_method_types import TYPES, UNKNOWN_PROVIDER, MethodType, check_settings
from authpi.services.errors import Conflict, FieldProblem, InvalidInput, InvalidRequest, NotFound
from authpi.storage import invalidation
from authpi.storage.tables.auth_methods import AuthMethod

MUTABLE = ("name", "enabled_login", "enabled_signup", "featured")


@dataclass(frozen=True)
class MethodInput:
    method: str
    name: str
    first_factor_only: bool | None
    settings: dict[str, Any] | None
    enabled_login: bool | None = None
    enabled_signup: bool | None = None
    featured: bool | None = None


def _seal_context(method_id: str) -> str:
    return f"auth_method:{method_id}"


def _problems_or_raise(problems: list[FieldProblem]) -> None:
    unknown = [p for p in problems if p.code == UNKNOWN_PROVIDER]
    if unknown:
        raise InvalidRequest(unknown)
    if problems:
        raise InvalidInput(problems[0].message, fields=problems)


def _spec(method: str) -> MethodType:
    spec = TYPES.get(method)
    if spec is None:
        raise InvalidInput.on("method", "invalid_choice", f"Unknown auth method type '{method}'")
    return spec


async def create_method(
    session: AsyncSession, box: SecretBox, issuer_id: str, data: MethodInput
) -> AuthMethod:
    spec = _spec(data.method)
    problems: list[FieldProblem] = []
    if data.first_factor_only is None:
        problems.append(FieldProblem("first_factor_only", "required", "first_factor_only is required"))
    elif spec.first_factor_only is not None and data.first_factor_only != spec.first_factor_only:
        problems.append(
            FieldProblem(
                "first_factor_only",
                "invalid_value",
                f"first_factor_only must be {str(spec.first_factor_only).lower()} for {spec.name}",
            )
        )
    if data.settings is None and spec.settings_required:
        problems.append(FieldProblem("settings", "required", f"{spec.name} requires a settings object"))
    settings = dict(data.settings or {})
    problems.extend(check_settings(spec, settings, creating=True))
    _problems_or_raise(problems)

    if not spec.social:
        taken = await session.scalar(
            select(AuthMethod.id).where(AuthMethod.issuer_id == issuer_id, AuthMethod.method == spec.name)
        )
        if taken:
            raise Conflict(f"This issuer already has a {spec.name} auth method ({taken})")

    method_id = ids.auth_method_id()
    secrets = {key: settings.pop(key) for key in spec.secrets if key in settings}
    public = {**spec.defaults, **settings}
    now = now_ms()
    row = AuthMethod(
        id=method_id,
        issuer_id=issuer_id,
        method=spec.name,
        name=data.name,
        enabled_login=True if data.enabled_login is None else data.enabled_login,
        enabled_signup=bool(data.enabled_signup),
        featured=bool(data.featured),
        first_factor_only=bool(data.first_factor_only),
        settings=public,
        sealed_secrets=box.seal_json(secrets, _seal_context(method_id)) if secrets else None,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    await _emit(session, "issuer.auth-method.created", row)
    return row


async def _emit(session: AsyncSession, kind: str, row: AuthMethod) -> None:
    """Every change of a method emits here, and evicts the issuer's cached methods (used by
    sign-in, ``oidc.context.load_auth_methods``) in every worker once it commits."""
    await events.emit_for(session, kind, row, "auth_method", issuer_id=row.issuer_id)
    await invalidation.evict_everywhere(session, "auth_methods", row.issuer_id)


async def list_methods(session: AsyncSession, issuer_id: str) -> list[AuthMethod]:
    rows = await session.scalars(
        select(AuthMethod).where(AuthMethod.issuer_id == issuer_id).order_by(AuthMethod.id)
    )
    return list(rows)


async def get_method(
    session: AsyncSession, issuer_id: str, method_id: str, *, for_update: bool = False
) -> AuthMethod:
    stmt = select(AuthMethod).where(AuthMethod.id == method_id, AuthMethod.issuer_id == issuer_id)
    if for_update:
        stmt = versions.for_update(stmt)
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound("Auth method")
    return row


def secrets_of(box: SecretBox, row: AuthMethod) -> dict[str, Any]:
    if not row.sealed_secrets:
        return {}
    return box.open_json(row.sealed_secrets, _seal_context(row.id))


def _immutable_changes(
    spec: MethodType, row: AuthMethod, box: SecretBox, settings: dict[str, Any]
) -> list[str]:
    changed = []
    sealed = secrets_of(box, row) if any(k in settings for k in spec.secrets) else {}
    for key in spec.immutable:
        if key not in settings:
            continue
        current = sealed.get(key) if key in spec.secrets else row.settings.get(key)
        if not isinstance(settings[key], str) or not hmac.compare_digest(
            str(current or "").encode(), settings[key].encode()
        ):
            changed.append(key)
    return changed


async def update_method(
    session: AsyncSession,
    box: SecretBox,
    issuer_id: str,
    method_id: str,
    changes: dict[str, Any],
    if_match: str | None,
) -> AuthMethod:
    row = await get_method(session, issuer_id, method_id, for_update=True)
    await versions.claim(session, row, "Auth method", if_match)
    spec = TYPES[row.method]
    problems: list[FieldProblem] = []
    if "method" in changes and changes["method"] != row.method:
        problems.append(
            FieldProblem("method", "immutable", "The method type cannot change; create a new method")
        )
    if changes.get("first_factor_only") is not None and changes["first_factor_only"] != row.first_factor_only:
        problems.append(FieldProblem("first_factor_only", "immutable", "first_factor_only cannot change"))
    settings = changes.get("settings")
    if settings is not None:
        problems.extend(
            FieldProblem(f"settings.{key}", "immutable", f"settings.{key} cannot change; create a new method")
            for key in _immutable_changes(spec, row, box, settings)
        )
        # Validate the settings as they will be stored, so cross-field rules see both sides.
        problems.extend(check_settings(spec, {**row.settings, **settings}, creating=False))
    _problems_or_raise(problems)

    for field in MUTABLE:
        if changes.get(field) is not None:
            setattr(row, field, changes[field])
    if settings is not None:
        public = {k: v for k, v in settings.items() if k not in spec.secrets and k not in spec.immutable}
        row.settings = {**row.settings, **public}
    await session.flush()
    await _emit(session, "issuer.auth-method.updated", row)
    return row


async def delete_method(session: AsyncSession, issuer_id: str, method_id: str, if_match: str | None) -> None:
    row = await get_method(session, issuer_id, method_id, for_update=True)
    await versions.claim(session, row, "Auth method", if_match)
    await _emit(session, "issuer.auth-method.deleted", row)
    await session.delete(row)
    await session.flush()
