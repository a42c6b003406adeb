"""Passkeys as stored credentials: the ``passkey`` rows of ``verifiers``, the issuer's passkey
method and its settings, and the relying party the ceremonies run for."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.oidc.context import auth_method
from authpi.oidc.pages import brand
from authpi.oidc.signin.methods.passkey.ceremonies import NewCredential, RelyingParty, VerifiedAssertion
from authpi.runtime import Runtime
from authpi.services import events
from authpi.services.auth_method_types import TYPES
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.users import User
from authpi.storage.tables.verifiers import Verifier

TYPE = "passkey"
MAX_PER_USER = 20  # credentials listed in one ceremony's allow/exclude lists
DEFAULT_NAME = "Passkey"


async def passkey_method(session: AsyncSession, issuer_id: str) -> AuthMethod | None:
    return await auth_method(session, issuer_id, TYPE)


def settings(method: AuthMethod) -> dict[str, Any]:
    return {**TYPES[TYPE].defaults, **(method.settings or {})}


def user_verification(method: AuthMethod) -> str:
    return str(settings(method)["user_verification"])


def requires_user_verification(method: AuthMethod) -> bool:
    return user_verification(method) == "required"


def relying_party(rt: Runtime, issuer: Issuer, method: AuthMethod) -> RelyingParty:
    """The server as a WebAuthn relying party: ID = host of the public URL (decision 22)."""
    name = settings(method).get("rp_name") or brand(issuer)["name"] or issuer.name
    return RelyingParty.of(rt.settings.public_url_base, str(name)[:200])


async def of_user(session: AsyncSession, issuer_id: str, user_id: str) -> list[Verifier]:
    """The user's active passkeys, oldest first."""
    rows = await session.scalars(
        select(Verifier)
        .where(
            Verifier.issuer_id == issuer_id,
            Verifier.user_id == user_id,
            Verifier.type == TYPE,
            Verifier.status == "active",
        )
        .order_by(Verifier.id)
        .limit(MAX_PER_USER)
    )
    return list(rows.all())


def descriptors(passkeys: list[Verifier]) -> list[tuple[str, list[str]]]:
    return [(p.credential_id or "", [str(t) for t in p.transports or []]) for p in passkeys]


async def by_credential(session: AsyncSession, issuer_id: str, credential_id: str) -> Verifier | None:
    if not credential_id or len(credential_id) > 1400:
        return None
    row: Verifier | None = await session.scalar(
        select(Verifier).where(
            Verifier.issuer_id == issuer_id,
            Verifier.credential_id == credential_id,
            Verifier.type == TYPE,
            Verifier.status == "active",
        )
    )
    return row


def public_view(verifier: Verifier) -> dict[str, Any]:
    """What may be said about a passkey (events, the Core API): never its key material."""
    return {
        "id": verifier.id,
        "type": TYPE,
        "name": verifier.name,
        "status": verifier.status,
        "aaguid": verifier.aaguid,
        "transports": verifier.transports or [],
        "backup_eligible": verifier.backup_eligible,
        "backed_up": verifier.backed_up,
    }


async def add(
    session: AsyncSession, issuer: Issuer, user: User, new: NewCredential, *, second_factor: bool
) -> Verifier:
    """Store a verified registration for ``user`` (added, not committed) with its events:
    ``user.verifier.created``, and ``user.mfa.factor-created`` when it serves as a second factor."""
    now = now_ms()
    row = Verifier(
        id=ids.ulid("vrf_"),
        issuer_id=issuer.id,
        user_id=user.id,
        type=TYPE,
        name=DEFAULT_NAME,
        status="active",
        primary=False,
        credential_id=new.credential_id,
        public_key=new.public_key,
        sign_count=new.sign_count,
        transports=new.transports,
        aaguid=new.aaguid,
        backup_eligible=new.backup_eligible,
        backed_up=new.backed_up,
        metadata_={},
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    scope = {"account_id": issuer.account_id, "issuer_id": issuer.id, "user_id": user.id}
    view = public_view(row)
    await events.emit_for(session, "user.verifier.created", row, "verifier", data=view, **scope)
    if second_factor:
        await events.emit_for(session, "user.mfa.factor-created", row, "verifier", data=view, **scope)
    return row


async def record_use(session: AsyncSession, verifier: Verifier, verified: VerifiedAssertion) -> bool:
    """Store the new sign counter and backup state; False when another sign-in moved the counter
    past this one meanwhile (the guard is in the UPDATE, so concurrent uses cannot both pass)."""
    now = now_ms()
    # An authenticator without a counter always says 0: accepted only while the stored one is 0.
    moved_forward = (
        Verifier.sign_count == 0 if verified.sign_count == 0 else Verifier.sign_count < verified.sign_count
    )
    result = await session.execute(
        update(Verifier)
        .where(Verifier.id == verifier.id, moved_forward)
        .values(
            sign_count=verified.sign_count,
            backed_up=verified.backed_up,
            backup_eligible=verified.backup_eligible,
            last_used_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def amr(verified: VerifiedAssertion | NewCredential) -> tuple[str, ...]:
    """RFC 8176: ``swk`` for a synced (backup-eligible) credential, else ``hwk``; ``user`` when the
    authenticator verified the user."""
    key = "swk" if verified.backup_eligible else "hwk"
    return (key, "user") if verified.user_verified else (key,)
