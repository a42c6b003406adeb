"""What a sign-in method can do for a user, and what a proven factor records."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from authpi.i18n import Text


class Step(StrEnum):
    FIRST_FACTOR = "first_factor"  # proves who the user is
    SECOND_FACTOR = "second_factor"  # adds assurance after a first factor (MFA, step-up)
    ENROLLMENT = "enrollment"  # adds a factor to an existing account
    REGISTRATION = "registration"  # creates an account (sign-up)
    RECOVERY = "recovery"  # regains access to an account


@dataclass(frozen=True)
class Offer:
    """One way forward a method offers on a page: a button or link with its label.

    ``action`` is where the button POSTs (with the request and CSRF fields) or, for ``link``
    offers, the URL the link opens. An entry may bring a ``script`` (served under the issuer,
    allowed by the pages' CSP) that enhances its form, and an ``autocomplete`` token the
    identifier field adds (e.g. for credential autofill)."""

    label: Text
    action: str
    method_id: str
    featured: bool = False
    link: bool = False
    script: str | None = None
    autocomplete: str | None = None


@dataclass(frozen=True)
class Factor:
    """A factor proven in this sign-in: its method and RFC 8176 ``amr`` values."""

    method: str
    method_id: str
    amr: tuple[str, ...]
    at: int

    def as_dict(self) -> dict[str, object]:
        return {"method": self.method, "method_id": self.method_id, "amr": list(self.amr), "at": self.at}
