"""AES-256-GCM encryption of secrets at rest under the master key (decision 4)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from authpi import data_dir as data_dir_files
from authpi.settings import decode_master_key

_VERSION = b"\x01"


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._aead = AESGCM(key)
        self._key = key

    def derive(self, label: str) -> bytes:
        """A sub-key for another purpose (e.g. CSRF MACs), so the master key is used only once."""
        return hmac.new(self._key, label.encode(), hashlib.sha256).digest()

    def seal(self, plaintext: bytes, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext, context.encode())
        return base64.urlsafe_b64encode(_VERSION + nonce + sealed).decode()

    def open(self, token: str, context: str) -> bytes:
        raw = base64.urlsafe_b64decode(token.encode())
        if raw[:1] != _VERSION:
            raise ValueError("unknown secret envelope version")
        return self._aead.decrypt(raw[1:13], raw[13:], context.encode())

    def opens(self, token: str, context: str) -> bool:
        """Whether ``token`` was sealed for ``context`` under this box's key."""
        try:
            self.open(token, context)
        except (InvalidTag, ValueError):
            return False
        return True

    def seal_json(self, value: dict[str, Any], context: str) -> str:
        return self.seal(json.dumps(value, separators=(",", ":")).encode(), context)

    def open_json(self, token: str, context: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.open(token, context))
        return loaded


def master_key_file(data_dir: Path) -> Path:
    return data_dir / "master.key"


def load_master_key(configured: str | None, data_dir: Path) -> bytes:
    """Use AUTHPI_MASTER_KEY when set; otherwise a key file created once with mode 0600.

    Raises ``ValueError`` for a key that is not 32 bytes of base64."""
    if configured:
        return decode_master_key(configured)
    data_dir_files.prepare(data_dir)
    path = master_key_file(data_dir)
    if path.exists():
        return decode_master_key(path.read_text())
    key = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.urlsafe_b64encode(key))
    return key
