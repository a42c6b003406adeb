"""RFC 6238 time-based one-time passwords (pyotp): secrets, provisioning URIs, and which time step a
code belongs to. No storage here: ``verifiers`` decides whether a step may still be used."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

import pyotp

DEFAULT_DIGITS = 6
DEFAULT_PERIOD = 30
# Codes of the previous and next step are accepted too, for clocks a little apart (±1 step).
TOLERANCE_STEPS = 1


@dataclass(frozen=True)
class Parameters:
    digits: int = DEFAULT_DIGITS
    period: int = DEFAULT_PERIOD


def new_secret() -> str:
    """160 random bits in base32 (RFC 4226 §4 recommends 160), what authenticator apps expect."""
    return pyotp.random_base32(32)


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def provisioning_uri(secret: str, params: Parameters, *, account: str, issuer_label: str) -> str:
    """The ``otpauth://totp/…`` URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, digits=params.digits, interval=params.period).provisioning_uri(
        name=account, issuer_name=issuer_label
    )


def normalize(code: str) -> str:
    """What the user typed, without the spaces and dashes apps show in the middle of codes."""
    return "".join(code.split()).replace("-", "")


def matching_step(secret: str, params: Parameters, code: str, at: float | None = None) -> int | None:
    """The time step (counter) ``code`` is the code of, within the tolerance, or None.

    Every candidate step is compared in constant time, so timing does not tell which one matched."""
    code = normalize(code)
    if len(code) != params.digits or not code.isdigit():
        return None
    now = time.time() if at is None else at
    current = int(now // params.period)
    totp = pyotp.TOTP(secret, digits=params.digits, interval=params.period)
    found = None
    for step in range(current - TOLERANCE_STEPS, current + TOLERANCE_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found
