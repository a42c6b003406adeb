"""Send limits for codes and links: every sender of a one-time code calls ``check`` before it issues.

SMS pumping is the threat: a bot asks for codes to premium-rate numbers it is paid for, on our
bill. Three hour-window caps (``AUTHPI_SEND_LIMIT_PER_*``) bound it: per recipient (one number
or address cannot be flooded), per client IP (one machine cannot rotate through numbers) and per
issuer (a distributed bot still has a ceiling). Counters live in the rate limiter's storage, so
they are shared through Redis when configured. A request for an unknown account counts the same
as one for a known account (the answers must not differ), and a refusal counts against nothing.
"""

from __future__ import annotations

from authpi.crypto import hashing
from authpi.ratelimit import RateLimits


def recipient_identity(issuer_id: str, channel: str, recipient: str) -> str:
    # A digest: the limiter's storage (maybe a shared Redis) never holds addresses or numbers.
    return f"{issuer_id}:{channel}:{hashing.digest(recipient.strip().lower())}"


async def check(limits: RateLimits, *, issuer_id: str, channel: str, recipient: str, client_ip: str) -> None:
    """Count one send to ``recipient`` asked from ``client_ip``; raises ``RateLimited`` (with its
    ``retry_after``) when any of the three limits is reached, counting nothing then."""
    await limits.hit_all(
        [
            ("send_recipient", recipient_identity(issuer_id, channel, recipient)),
            ("send_ip", client_ip),
            ("send_issuer", issuer_id),
        ]
    )
