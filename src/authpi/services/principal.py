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

    def allows(self, scope: str) -> bool:
        return scopes.grants(self.scopes, scope)
