"""Accounts: the administrative owners of issuers, each a facade over an organization (C.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.services import api_keys, events, versions
from authpi.services.errors import NotFound
from authpi.storage.tables.accounts import Account
from authpi.storage.tables.system import SystemValue

PROFILE_FIELDS = ("contact", "address", "business_details", "social_links", "custom_fields")
_PLATFORM_ISSUER = "platform_issuer_id"


@dataclass(frozen=True)
class Credentials:
    account_id: str
    key_id: str
    key_secret: str

    def as_dict(self) -> dict[str, str]:
        return {"account_id": self.account_id, "key_id": self.key_id, "key_secret": self.key_secret}


async def platform_issuer_id(session: AsyncSession) -> str:
    """The issuer that notionally holds account organizations; created once per installation."""
    row = await session.get(SystemValue, _PLATFORM_ISSUER)
    if row is None:
        row = SystemValue(key=_PLATFORM_ISSUER, value=ids.issuer_id())
        session.add(row)
        await session.flush()
    return row.value


async def create_account(session: AsyncSession, name: str | None) -> Credentials:
    """A new account with its first full-access API key (decisions 3 and 26)."""
    await platform_issuer_id(session)
    now = now_ms()
    account_id = ids.account_id()
    account = Account(
        id=account_id,
        org_id=ids.org_id_for_account(account_id),
        name=name,
        org_type="business",
        profile={},
        metadata_={},
        created_at=now,
        updated_at=now,
    )
    session.add(account)
    await session.flush()
    await events.emit_for(session, "account.created", account, "account", account_id=account_id)
    new_key = await api_keys.create_key(
        session, account_id, name="Bootstrap key", restrictions={"scopes": ["*"]}
    )
    return Credentials(account_id, new_key.key.id, new_key.secret)


async def count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Account)) or 0)


async def get_account(session: AsyncSession, account_id: str, *, for_update: bool = False) -> Account:
    stmt = select(Account).where(Account.id == account_id)
    if for_update:
        stmt = versions.for_update(stmt)
    account = await session.scalar(stmt)
    if account is None:
        raise NotFound("Account")
    return account


async def update_account(
    session: AsyncSession, account_id: str, changes: dict[str, Any], if_match: str | None
) -> Account:
    account = await get_account(session, account_id, for_update=True)
    await versions.claim(session, account, "Account", if_match)
    for field in ("name", "description", "logo_url"):
        if field in changes:
            setattr(account, field, changes[field])
    if "metadata" in changes:
        account.metadata_ = changes["metadata"] or {}
    profile = dict(account.profile)
    for field in PROFILE_FIELDS:
        if field in changes:
            profile[field] = changes[field]
    account.profile = profile
    await session.flush()
    await events.emit_for(session, "account.updated", account, "account", account_id=account.id)
    return account
