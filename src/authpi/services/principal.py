from __future__ import annotations

from dataclasses import dataclass

from authpi.services import scopes


@dataclass(frozen=True)
class Principal:
    """Who is calling the Core API, as established by an API key."""

    account_id: str
    org_id: str
    key_id: str
    scopes: tuple[str, ...]
    # The key's own limits, which bound what it may grant: when it stops working, and from where.
    expires_at: int | None = None
    networks: tuple[str, ...] = ()  # empty: any address

    def allows(self, scope: str) -> bool:
        return scopes.grants(self.scopes, scope)
