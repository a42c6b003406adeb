"""The one-time-code foundation (``services.one_time_codes`` and ``services.send_limits``), run
against the database of a real, migrated server on SQLite and PostgreSQL: counting of attempts
under concurrent guesses, single use, expiry, superseding, links, and the send limits."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from authpi_admin.types import Issuer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from authpi.clock import now_ms
from authpi.crypto.secretbox import SecretBox, load_master_key
from authpi.ratelimit import RateLimits
from authpi.services import one_time_codes as otc
from authpi.services import send_limits
from authpi.services.errors import RateLimited
from authpi.settings import Settings
from authpi.storage.db import make_engine, make_sessionmaker
from authpi.storage.tables.one_time_codes import OneTimeCode
from tests.harness import RunningServer

pytestmark = pytest.mark.anyio

MINUTE_MS = 60_000


class Store:
    def __init__(self, engine: AsyncEngine, box: SecretBox) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = make_sessionmaker(engine)
        self.box = box

    async def issue(self, issuer_id: str, **options: Any) -> otc.Issued:
        defaults: dict[str, Any] = {
            "purpose": otc.SIGN_IN,
            "channel": "email",
            "recipient": "ada@example.com",
            "ttl_ms": 10 * MINUTE_MS,
        }
        async with self.sessions() as session:
            issued = await otc.issue(session, self.box, issuer_id=issuer_id, **{**defaults, **options})
            await session.commit()
            return issued

    async def check(self, code_id: str, code: str, **options: Any) -> otc.CodeCheck:
        async with self.sessions() as session:
            return await otc.check_code(session, self.box, code_id=code_id, code=code, **options)

    async def row(self, code_id: str) -> OneTimeCode:
        async with self.sessions() as session:
            found = await session.scalar(select(OneTimeCode).where(OneTimeCode.id == code_id))
            assert found is not None
            return found


@pytest.fixture
async def store(server: RunningServer) -> AsyncIterator[Store]:
    settings = Settings(
        data_dir=Path(server.env["AUTHPI_DATA_DIR"]),
        database_url=server.env.get("AUTHPI_DATABASE_URL"),
        master_key=None,
    )
    engine = make_engine(settings, pool_size=12)
    try:
        yield Store(engine, SecretBox(load_master_key(None, settings.data_dir)))
    finally:
        await engine.dispose()


def wrong_codes(right: str, count: int) -> list[str]:
    return [f"{(int(right) + n) % 1_000_000:06d}" for n in range(1, count + 1)]


async def test_a_code_is_stored_keyed_and_works_once(store: Store, issuer: Issuer) -> None:
    issued = await store.issue(issuer.id)
    assert issued.code is not None and len(issued.code) == 6 and issued.code.isdigit()
    assert issued.link_token is None
    row = await store.row(issued.row.id)
    assert row.id.startswith("otc_")
    # Neither the code nor its plain SHA-256 is stored (a million candidates would find it).
    assert issued.code not in str(row.code_hash)
    assert row.code_hash != hashlib.sha256(issued.code.encode()).hexdigest()

    assert (await store.check(row.id, "12 34 5x")).error == "wrong"
    first = await store.check(row.id, f" {issued.code[:3]} {issued.code[3:]} ")
    assert first.success and first.row is not None and first.row.consumed_at is not None
    again = await store.check(row.id, issued.code)
    assert (again.success, again.error) == (False, "used")
    assert (await store.check("otc_unknown", issued.code)).error == "wrong"


async def test_an_expired_code_fails_even_when_right(store: Store, issuer: Issuer) -> None:
    issued = await store.issue(issuer.id)
    assert issued.code is not None
    async with store.sessions() as session:
        await session.execute(
            update(OneTimeCode).where(OneTimeCode.id == issued.row.id).values(expires_at=now_ms() - 1)
        )
        await session.commit()
    assert (await store.check(issued.row.id, issued.code)).error == "expired"
    assert (await store.row(issued.row.id)).attempts == 0  # refused before any comparison


async def test_five_wrong_codes_spend_the_code(store: Store, issuer: Issuer) -> None:
    issued = await store.issue(issuer.id)
    assert issued.code is not None
    for guess in wrong_codes(issued.code, 5):
        assert (await store.check(issued.row.id, guess)).error == "wrong"
    late = await store.check(issued.row.id, issued.code)
    assert (late.success, late.error) == (False, "too_many")


async def test_concurrent_guesses_are_counted_exactly(store: Store, issuer: Issuer) -> None:
    """Twenty wrong guesses at once: exactly five are compared, the other fifteen are refused
    without a comparison, and the right code afterwards is refused too."""
    issued = await store.issue(issuer.id)
    assert issued.code is not None
    results = await asyncio.gather(*(store.check(issued.row.id, g) for g in wrong_codes(issued.code, 20)))
    assert (await store.row(issued.row.id)).attempts == 5
    assert sum(r.error == "wrong" for r in results) == 5
    assert sum(r.error == "too_many" for r in results) == 15
    assert (await store.check(issued.row.id, issued.code)).error == "too_many"


async def test_the_right_code_sent_twice_at_once_succeeds_once(store: Store, issuer: Issuer) -> None:
    issued = await store.issue(issuer.id)
    assert issued.code is not None
    results = await asyncio.gather(*(store.check(issued.row.id, issued.code) for _ in range(4)))
    assert sum(r.success for r in results) == 1
    assert {r.error for r in results if not r.success} == {"used"}


async def test_a_new_code_ends_the_earlier_ones_of_the_same_purpose(store: Store, issuer: Issuer) -> None:
    first = await store.issue(issuer.id, recipient="bo@example.com")
    other_purpose = await store.issue(issuer.id, recipient="bo@example.com", purpose=otc.PASSWORD_RESET)
    other_person = await store.issue(issuer.id, recipient="cy@example.com")
    second = await store.issue(issuer.id, recipient="bo@example.com")
    assert first.code and second.code and other_purpose.code and other_person.code
    assert (await store.check(first.row.id, first.code)).error == "expired"
    assert (await store.check(second.row.id, second.code)).success
    assert (await store.check(other_purpose.row.id, other_purpose.code)).success
    assert (await store.check(other_person.row.id, other_person.code)).success
    async with store.sessions() as session:
        newest = await otc.latest(
            session, issuer_id=issuer.id, purpose=otc.SIGN_IN, recipient="bo@example.com"
        )
    assert newest is not None and newest.id == second.row.id
    assert otc.cooldown_left_ms(newest, 30) > 25_000
    assert otc.cooldown_left_ms(newest, 0) == 0


async def test_a_link_works_once_in_the_browser_that_asked(store: Store, issuer: Issuer) -> None:
    issued = await store.issue(issuer.id, code=False, link=True, browser="b" * 64)
    token = issued.link_token
    assert token is not None and issued.code is None
    row = await store.row(issued.row.id)
    assert row.link_hash == hashlib.sha256(token.encode()).hexdigest() and row.code_hash is None

    async def redeem(**options: Any) -> otc.LinkCheck:
        async with store.sessions() as session:
            return await otc.redeem_link(session, issuer_id=issuer.id, purpose=otc.SIGN_IN, **options)

    assert (await redeem(token=token + "x")).error == "wrong"
    assert (await redeem(token=token, browser="c" * 64)).error == "other_browser"
    results = await asyncio.gather(*(redeem(token=token, browser="b" * 64) for _ in range(4)))
    assert sum(r.success for r in results) == 1
    assert (await redeem(token=token)).error == "used"
    # A link is not a code: guessing codes against it gets nowhere.
    assert (await store.check(issued.row.id, "123456")).error == "used"


async def test_an_expired_link_is_refused(store: Store, issuer: Issuer) -> None:
    issued = await store.issue(issuer.id, code=False, link=True, ttl_ms=1)
    await asyncio.sleep(0.01)
    async with store.sessions() as session:
        result = await otc.redeem_link(
            session, issuer_id=issuer.id, purpose=otc.SIGN_IN, token=issued.link_token or ""
        )
    assert result.error == "expired"


async def test_send_limits_cap_a_recipient_an_address_and_an_issuer(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        rate_limits_enabled=True,
        send_limit_per_recipient="3/hour",
        send_limit_per_ip="5/hour",
        send_limit_per_issuer="8/hour",
    )
    limits = RateLimits(settings)

    async def send(recipient: str, ip: str, issuer_id: str = "iss_a") -> bool:
        try:
            await send_limits.check(
                limits, issuer_id=issuer_id, channel="sms", recipient=recipient, client_ip=ip
            )
        except RateLimited as refused:
            assert 1 <= refused.retry_after <= 3600
            return False
        return True

    assert [await send("+4915100000001", "10.0.0.1") for _ in range(4)] == [True, True, True, False]
    # The refusal counted nothing: the address has sent 3 of its 5.
    assert [await send(f"+49151000001{n:02d}", "10.0.0.1") for n in range(3)] == [True, True, False]
    # The issuer has sent 5 of its 8, from any address.
    assert [await send(f"+49151000002{n:02d}", f"10.0.1.{n}") for n in range(4)] == [True, True, True, False]
    assert await send("+49151000003", "10.0.2.1", issuer_id="iss_b")  # another issuer's own budget
