"""The master key must be the one the database's secrets were sealed with.

A wrong key (valid, just not this database's) opens nothing: signing keys, client secrets and
idempotent responses would all fail at request time while the server looks healthy. So the first
start seals a known value into ``system_values``, and every start (and every CLI command) opens it
before doing anything else.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi.crypto.secretbox import SecretBox
from authpi.oidc.keys import sealed_by
from authpi.storage.dialects import upsert
from authpi.storage.tables.signing_keys import SigningKey
from authpi.storage.tables.system import SystemValue

CHECK_KEY = "master_key_check"
_CONTEXT = "system_values:master_key_check"
_PLAINTEXT = b"AuthPI master key check"


class WrongMasterKey(Exception):
    """The configured master key does not open this database's secrets."""


async def verify(session: AsyncSession, box: SecretBox) -> None:
    """Raise ``WrongMasterKey`` unless ``box`` opens the database's check value (sealing it first on a
    database that has none yet)."""
    sealed = await _check_value(session)
    if sealed is None:
        await _verify_older_secrets(session, box)
        table = SystemValue.__table__
        insert = upsert(session, table).values(key=CHECK_KEY, value=box.seal(_PLAINTEXT, _CONTEXT))
        await session.execute(insert.on_conflict_do_nothing(index_elements=[table.c.key]))
        await session.commit()
        # Two first starts at once: the value that won is the one every start must open.
        sealed = await _check_value(session)
    if sealed is None or not box.opens(sealed, _CONTEXT):
        raise WrongMasterKey


async def _check_value(session: AsyncSession) -> str | None:
    value: str | None = await session.scalar(select(SystemValue.value).where(SystemValue.key == CHECK_KEY))
    return value


async def _verify_older_secrets(session: AsyncSession, box: SecretBox) -> None:
    """A database from before the check value holds no proof of its key but its sealed secrets:
    open one signing key, so the first start after an upgrade cannot adopt a wrong key."""
    row = await session.scalar(select(SigningKey).limit(1))
    if row is not None and not sealed_by(box, row):
        raise WrongMasterKey
