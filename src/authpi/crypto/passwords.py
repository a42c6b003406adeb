"""Password hashing with argon2id (decision 4: m=19 MiB, t=2, p=1), run in worker threads.

Hashing releases the GIL, so a bounded thread pool keeps a login spike from stalling the event
loop (token requests keep flowing) and caps the CPU an attacker can make us burn.
"""

from __future__ import annotations

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16)
_LIMITER = anyio.CapacityLimiter(4)
# Verified when the user is unknown, so a miss costs the same time as a wrong password.
_DUMMY_HASH = _HASHER.hash("authpi-dummy-password")


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_HASHER.hash, password, limiter=_LIMITER)


def _verify(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """Constant-work verification: an absent hash still costs one argon2 verify."""
    ok = await anyio.to_thread.run_sync(_verify, stored or _DUMMY_HASH, password, limiter=_LIMITER)
    return ok and stored is not None


def needs_rehash(stored: str) -> bool:
    return _HASHER.check_needs_rehash(stored)
