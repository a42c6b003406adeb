"""Identifier generation (decision 5): prefix + opaque, time-ordered where it helps keyset paging."""

from __future__ import annotations

import os
import secrets
import time

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _uuid7_int() -> int:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | rand
    # Version 7 and RFC 4122 variant bits.
    value &= ~(0xF << 76)
    value |= 0x7 << 76
    value &= ~(0x3 << 62)
    value |= 0x2 << 62
    return value


def _base36(value: int, width: int) -> str:
    out = []
    while value:
        value, rem = divmod(value, 36)
        out.append(_B36[rem])
    return "".join(reversed(out)).rjust(width, "0")


def time_ordered(prefix: str) -> str:
    """``prefix`` + 25 lowercase base-36 chars of a UUIDv7; lexicographic order is creation order."""
    return prefix + _base36(_uuid7_int(), 25)


def hex32(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def ulid(prefix: str, ms: int | None = None, *, lowest: bool = False) -> str:
    """A ULID for the millisecond ``ms`` (now by default); ``lowest`` gives the smallest one of that
    millisecond, a bound for range scans over IDs by time."""
    if ms is None:
        ms = time.time_ns() // 1_000_000
    value = (ms << 80) | (0 if lowest else int.from_bytes(os.urandom(10), "big"))
    chars = []
    for _ in range(26):
        value, rem = divmod(value, 32)
        chars.append(_CROCKFORD[rem])
    return prefix + "".join(reversed(chars))


class MonotonicUlid:
    """ULIDs that strictly increase within this process, even within one millisecond (the random
    part counts up), so rows created one after the other sort in that order."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._last = 0

    def __call__(self, ms: int | None = None) -> str:
        if ms is None:
            ms = time.time_ns() // 1_000_000
        # A fresh random part leaves its top bit clear, so counting up stays within the millisecond.
        value = (ms << 80) | int.from_bytes(os.urandom(10), "big") >> 1
        if value <= self._last:
            value = self._last + 1
        self._last = value
        chars = []
        for _ in range(26):
            value, rem = divmod(value, 32)
            chars.append(_CROCKFORD[rem])
        return self.prefix + "".join(reversed(chars))


def account_id() -> str:
    return time_ordered("acc_")


def org_id_for_account(acc_id: str) -> str:
    # An account is a facade over an organization sharing its suffix.
    return "org_" + acc_id.removeprefix("acc_")


def issuer_id() -> str:
    return time_ordered("i_")


def api_key_id() -> str:
    return hex32("key_")


def auth_method_id() -> str:
    return time_ordered("am_")


def client_id() -> str:
    return time_ordered("c_")


def user_id() -> str:
    return time_ordered("usr_")


def session_id() -> str:
    return time_ordered("s_")


def organization_id() -> str:
    return time_ordered("org_")


def membership_id() -> str:
    return time_ordered("mem_")


def group_id() -> str:
    return time_ordered("grp_")


def invitation_id() -> str:
    return time_ordered("inv_")


def sso_domain_id() -> str:
    return time_ordered("dom_")
