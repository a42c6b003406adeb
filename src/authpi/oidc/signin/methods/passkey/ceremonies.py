"""The WebAuthn protocol, through py_webauthn and nothing else: the options of a ceremony and the
verification of what the authenticator answered.

The relying party is the server itself: its ID is the host of ``AUTHPI_PUBLIC_URL`` and the only
origin accepted is that URL's scheme, host and port, compared exactly (decision 22). Nothing here
touches the database; the callers keep challenges and credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    generate_challenge,
    options_to_json_dict,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

TIMEOUT_MS = 120_000
MAX_RESPONSE = 16 * 1024  # a response larger than this is no authenticator's (attestation included)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What an untrusted response can make the parsers raise, besides the library's own errors.
_TRANSPORTS = {t.value for t in AuthenticatorTransport}
_MALFORMED = (WebAuthnException, ValueError, TypeError, KeyError, IndexError, AttributeError)


class CeremonyFailed(Exception):
    """The authenticator's answer does not prove what it should; the message says why (for logs
    and tests, not for the page)."""


@dataclass(frozen=True)
class RelyingParty:
    id: str
    name: str
    origin: str

    @classmethod
    def of(cls, public_url: str, name: str) -> RelyingParty:
        parts = urlsplit(public_url)
        host = (parts.hostname or "").lower()
        port = parts.port
        netloc = host if port is None or port == _DEFAULT_PORTS.get(parts.scheme) else f"{host}:{port}"
        if ":" in host:  # an IPv6 literal keeps its brackets in an origin
            netloc = netloc.replace(host, f"[{host}]", 1)
        return cls(id=host, name=name, origin=f"{parts.scheme}://{netloc}")


@dataclass(frozen=True)
class NewCredential:
    """A verified registration: what is stored of the credential (bytes as base64url)."""

    credential_id: str
    public_key: str
    sign_count: int
    aaguid: str
    transports: list[str]
    backup_eligible: bool
    backed_up: bool
    user_verified: bool


@dataclass(frozen=True)
class Assertion:
    """Who an authentication response claims to be, read before its signature is checked."""

    credential_id: str
    user_handle: str | None


@dataclass(frozen=True)
class VerifiedAssertion:
    sign_count: int
    backup_eligible: bool
    backed_up: bool
    user_verified: bool


def new_challenge() -> str:
    return bytes_to_base64url(generate_challenge())


def _descriptors(credentials: list[tuple[str, list[str]]]) -> list[PublicKeyCredentialDescriptor]:
    found = []
    for credential_id, transports in credentials:
        known = [AuthenticatorTransport(t) for t in transports if t in _TRANSPORTS]
        found.append(
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(credential_id), transports=known or None)
        )
    return found


def registration_options(
    rp: RelyingParty,
    *,
    challenge: str,
    user_handle: str,
    user_name: str,
    display_name: str,
    user_verification: str,
    resident_key: str,
    exclude: list[tuple[str, list[str]]],
) -> dict[str, Any]:
    """``PublicKeyCredentialCreationOptions`` as JSON (for ``navigator.credentials.create``)."""
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_id=user_handle.encode(),
        user_name=user_name,
        user_display_name=display_name or user_name,
        challenge=base64url_to_bytes(challenge),
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement(resident_key),
            require_resident_key=resident_key == "required",
            user_verification=UserVerificationRequirement(user_verification),
        ),
        exclude_credentials=_descriptors(exclude),
    )
    return options_to_json_dict(options)


def authentication_options(
    rp: RelyingParty, *, challenge: str, user_verification: str, allow: list[tuple[str, list[str]]]
) -> dict[str, Any]:
    """``PublicKeyCredentialRequestOptions`` as JSON; an empty ``allow`` asks for a discoverable
    credential (the authenticator says whose it is)."""
    options = generate_authentication_options(
        rp_id=rp.id,
        challenge=base64url_to_bytes(challenge),
        timeout=TIMEOUT_MS,
        allow_credentials=_descriptors(allow),
        user_verification=UserVerificationRequirement(user_verification),
    )
    return options_to_json_dict(options)


def _bounded(response: str) -> str:
    if not response or len(response) > MAX_RESPONSE:
        raise CeremonyFailed("missing or oversized response")
    return response


def verify_registration(
    rp: RelyingParty, response: str, *, challenge: str, require_user_verification: bool
) -> NewCredential:
    try:
        parsed = parse_registration_credential_json(_bounded(response))
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            require_user_verification=require_user_verification,
        )
    except _MALFORMED as exc:
        raise CeremonyFailed(str(exc)) from exc
    transports = [t.value for t in parsed.response.transports or []][:8]
    return NewCredential(
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=bytes_to_base64url(verified.credential_public_key),
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
        transports=transports,
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backed_up=verified.credential_backed_up,
        user_verified=verified.user_verified,
    )


def read_assertion(response: str) -> Assertion:
    try:
        parsed = parse_authentication_credential_json(_bounded(response))
    except _MALFORMED as exc:
        raise CeremonyFailed(str(exc)) from exc
    handle = parsed.response.user_handle
    try:
        user_handle = handle.decode() if handle else None
    except UnicodeDecodeError:
        user_handle = "\ufffd"  # no user's handle: matches nobody
    return Assertion(bytes_to_base64url(parsed.raw_id), user_handle)


def verify_assertion(
    rp: RelyingParty,
    response: str,
    *,
    challenge: str,
    public_key: str,
    sign_count: int,
    require_user_verification: bool,
) -> VerifiedAssertion:
    """Check the signature, challenge, origin, RP ID, user presence (and verification when
    required) and that the sign counter moved forward (unless the authenticator keeps none: both
    zero)."""
    try:
        verified = verify_authentication_response(
            credential=_bounded(response),
            expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=base64url_to_bytes(public_key),
            credential_current_sign_count=sign_count,
            require_user_verification=require_user_verification,
        )
    except _MALFORMED as exc:
        raise CeremonyFailed(str(exc)) from exc
    return VerifiedAssertion(
        sign_count=verified.new_sign_count,
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backed_up=verified.credential_backed_up,
        user_verified=verified.user_verified,
    )
