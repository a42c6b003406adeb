"""Minting and verifying the JWTs the provider issues (idp-api §B).

Access tokens carry ``typ: at+jwt`` (RFC 9068); ID and refresh tokens carry no ``typ`` so neither
can be replayed as an access token."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from authpi.clock import now_s
from authpi.oidc import acr
from authpi.oidc.keys import ALGORITHMS, IssuerKeys

ACCESS_TYP = "at+jwt"
SUPPORTED_SCOPE_CLAIMS = {
    "profile": ("name", "given_name", "family_name", "picture", "locale"),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
    "address": ("address",),
}


_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_jti() -> str:
    """18 alphanumeric characters from one OS random read (106 bits), not one read per character."""
    value = int.from_bytes(secrets.token_bytes(14), "big")
    chars = []
    for _ in range(18):
        value, digit = divmod(value, 62)
        chars.append(_BASE62[digit])
    return "".join(chars)


def _sign(keys: IssuerKeys, alg: str, claims: dict[str, Any], typ: str | None = None) -> str:
    key = keys.signer(alg)
    header: dict[str, Any] = {"alg": alg, "kid": key.kid}
    if typ:
        header["typ"] = typ
    # joserfc adds ``typ: JWT`` unless told not to; only access tokens may carry a ``typ``.
    return jwt.encode(header, claims, key, algorithms=[alg], default_type=None)


def token_hash(value: str, alg: str) -> str:
    """``at_hash``: left half of the hash named by the signing algorithm (SHA-512 for Ed25519)."""
    digest = (
        hashlib.sha512(value.encode()).digest() if alg == "EdDSA" else hashlib.sha256(value.encode()).digest()
    )
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


@dataclass(frozen=True)
class Minted:
    token: str
    jti: str
    exp: int


def access_token(
    keys: IssuerKeys,
    alg: str,
    *,
    iss: str,
    sub: str,
    aud: str | list[str],
    client_id: str,
    scope: str,
    ttl: int,
    dat_type: str,
    auth_time: int | None = None,
    sid: str | None = None,
    organizations: list[dict[str, Any]] | None = None,
    org_id: str | None = None,
) -> Minted:
    """``auth_time`` is when the user authenticated (RFC 9068 §2.2.1), so it stays the same across
    refreshes; tokens of no user (client_credentials) have none."""
    now = now_s()
    jti = new_jti()
    claims: dict[str, Any] = {
        "iss": iss,
        "sub": sub,
        "aud": aud,
        "exp": now + ttl,
        "iat": now,
        "jti": jti,
        "client_id": client_id,
        "dat": {"type": dat_type},
        "scope": scope,
    }
    if auth_time is not None:
        claims["auth_time"] = auth_time
    if sid:
        claims["sid"] = sid
    if organizations is not None:
        claims["organizations"] = organizations
    if org_id:
        claims["org_id"] = org_id
    return Minted(_sign(keys, alg, claims, ACCESS_TYP), jti, now + ttl)


def id_token(
    keys: IssuerKeys,
    alg: str,
    *,
    iss: str,
    sub: str,
    client_id: str,
    ttl: int,
    auth_time: int,
    sid: str,
    nonce: str | None,
    access: str | None,
    profile_claims: dict[str, Any],
    organizations: list[dict[str, Any]],
    org_id: str | None = None,
    amr: list[str] | None = None,
) -> str:
    """``amr`` (RFC 8176) lists how the user authenticated; ``acr`` says whether that was one factor
    or several."""
    now = now_s()
    claims: dict[str, Any] = {
        "iss": iss,
        "sub": sub,
        "aud": client_id,
        "azp": client_id,
        "exp": now + ttl,
        "iat": now,
        "auth_time": auth_time,
        "sid": sid,
        **profile_claims,
        "organizations": organizations,
    }
    if nonce:
        claims["nonce"] = nonce
    if access:
        claims["at_hash"] = token_hash(access, alg)
    if org_id:
        claims["org_id"] = org_id
    if amr:
        claims["amr"] = list(amr)
        claims["acr"] = acr.of(amr)
    return _sign(keys, alg, claims)


def refresh_token(
    keys: IssuerKeys,
    alg: str,
    *,
    iss: str,
    sub: str,
    client_id: str,
    sid: str,
    scope: str,
    ttl: int,
    org_id: str | None = None,
) -> Minted:
    now = now_s()
    jti = new_jti()
    claims: dict[str, Any] = {
        "iss": iss,
        "sub": sub,
        "aud": client_id,
        "exp": now + ttl,
        "iat": now,
        "jti": jti,
        "sid": sid,
        "client_id": client_id,
        "scope": scope,
    }
    if org_id:
        claims["org_id"] = org_id
    return Minted(_sign(keys, alg, claims), jti, now + ttl)


@dataclass(frozen=True)
class Verified:
    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def is_access_token(self) -> bool:
        return self.header.get("typ") == ACCESS_TYP

    @property
    def is_id_token(self) -> bool:
        """ID tokens carry ``auth_time``; refresh tokens (no ``typ`` either) never do."""
        return not self.is_access_token and isinstance(self.claims.get("auth_time"), int)


def verify(keys: IssuerKeys, token: str, iss: str, *, allow_expired: bool = False) -> Verified | None:
    """Signature, issuer and expiry; None for anything that is not a valid token of this issuer."""
    if not token or len(token) > 8192 or token.count(".") != 2:
        return None
    try:
        decoded = jwt.decode(token, keys.verification, algorithms=list(ALGORITHMS))
    except (JoseError, ValueError, KeyError, TypeError):
        return None
    claims = decoded.claims
    if claims.get("iss") != iss:
        return None
    exp = claims.get("exp")
    if not isinstance(exp, int) or (not allow_expired and exp <= now_s()):
        return None
    return Verified(dict(decoded.header), dict(claims))


def profile_claims(
    user_profile: dict[str, Any], username: str, username_type: str, scopes: set[str]
) -> dict[str, Any]:
    """Standard claims released per scope (idp-api §A.5); booleans stay JSON booleans."""
    source = dict(user_profile)
    if username_type == "email":
        source.setdefault("email", username)
    if username_type == "phone":
        source.setdefault("phone_number", username)
    if "name" not in source:
        display = source.get("display_name") or " ".join(
            str(p) for p in (source.get("first_name"), source.get("last_name")) if p
        )
        if display:
            source["name"] = display
    source.setdefault("given_name", source.get("first_name"))
    source.setdefault("family_name", source.get("last_name"))
    out: dict[str, Any] = {}
    for scope, names in SUPPORTED_SCOPE_CLAIMS.items():
        if scope not in scopes:
            continue
        for name in names:
            value = source.get(name)
            if name.endswith("_verified"):
                out[name] = bool(value)
            elif value is not None:
                out[name] = value
    return out
