"""A software WebAuthn authenticator for tests: one ES256 discoverable credential, ``none``
attestation, built on ``cryptography`` and ``cbor2`` (soft-webauthn cannot be installed next to
webauthn 3, and never sets the UV flag).

It turns the JSON options the server sends into the JSON a browser posts back
(``RegistrationResponseJSON`` / ``AuthenticationResponseJSON``). Everything a browser or an
authenticator would vouch for is a parameter, so tests can lie: the ``origin`` in client data,
the ``rp_id`` hashed into authenticator data, the user-verified flag and the sign counter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40
AAGUID = bytes(16)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftPasskey:
    def __init__(self, *, user_verified: bool = True, synced: bool = False) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = secrets.token_bytes(32)
        self.user_handle: bytes | None = None
        self.rp_id: str | None = None
        self.sign_count = 0
        self.user_verified = user_verified
        self.synced = synced  # backup-eligible and backed up, like a passkey in a cloud keychain

    @property
    def id(self) -> str:
        return b64url(self.credential_id)

    def _flags(self, *extra: int) -> int:
        flags = UP | (UV if self.user_verified else 0) | (BE | BS if self.synced else 0)
        for flag in extra:
            flags |= flag
        return flags

    def _client_data(self, kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
        ).encode()

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        )

    def create(self, options: dict[str, Any], origin: str, *, rp_id: str | None = None) -> str:
        """Answer ``navigator.credentials.create`` options as the browser would post them."""
        self.rp_id = rp_id or options["rp"]["id"]
        self.user_handle = unb64url(options["user"]["id"])
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        attested = AAGUID + len(self.credential_id).to_bytes(2, "big") + self.credential_id + self._cose_key()
        auth_data = (
            hashlib.sha256(str(self.rp_id).encode()).digest()
            + bytes([self._flags(AT)])
            + self.sign_count.to_bytes(4, "big")
            + attested
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        response = {
            "clientDataJSON": b64url(client_data),
            "attestationObject": b64url(attestation),
            "transports": ["internal", "hybrid"],
        }
        return self._credential(response)

    def get(
        self,
        options: dict[str, Any],
        origin: str,
        *,
        rp_id: str | None = None,
        sign_count: int | None = None,
    ) -> str:
        """Answer ``navigator.credentials.get`` options; the counter moves on by one unless
        ``sign_count`` says what to claim."""
        allowed = [c["id"] for c in options.get("allowCredentials") or []]
        assert not allowed or self.id in allowed, "the server did not ask for this credential"
        if sign_count is None:
            self.sign_count += 1
            sign_count = self.sign_count
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        auth_data = (
            hashlib.sha256(str(rp_id or options["rpId"]).encode()).digest()
            + bytes([self._flags()])
            + sign_count.to_bytes(4, "big")
        )
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        response = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
            "userHandle": b64url(self.user_handle or b""),
        }
        return self._credential(response)

    def _credential(self, response: dict[str, Any]) -> str:
        return json.dumps(
            {
                "id": self.id,
                "rawId": self.id,
                "type": "public-key",
                "response": response,
                "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
            }
        )
