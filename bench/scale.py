"""The many-tenant token scenario (``cc_es256_scale``): ``client_credentials`` ES256 with the bench's
issuer among 10,000 issuers and 100,000 clients, requests spread over 1,000 clients of 1,000
different issuers, so the server's issuer, client and key caches see a realistic working set rather
than one hot entry.

Seeding by SQL, as the Core API writes the rows: one issuer and one ES256 M2M client are created
through the Core API and serve one token (so the server creates that issuer's signing keys the way
it does on first use); every other issuer, client and signing key is a clone of those rows with
fresh IDs, written with the server's own table definitions:

* issuers: the template's columns (settings, access mode, ...) with a new ``ids.issuer_id()`` and name;
* clients: the template's columns (type, scopes, settings) with a new ``ids.client_id()``, a new
  secret made and digested by the server's own ``hashing`` functions (``cs_`` prefix, SHA-256);
* signing keys: one per algorithm the template issuer has (ES256, EdDSA, RS256), each with its own
  kid, sealed under the server's master key by ``authpi.oidc.keys._new_key``. ES256 and EdDSA keys
  are generated per issuer; RSA key material comes from a pool of 16 keys generated for the run
  (10,000 RSA-2048 generations would take ~15 minutes; the rows, kids, seals and the work a worker
  does to load them are the same).

Through the API each issuer + client + first-token key generation would cost ~100 ms of server CPU
(RSA generation alone): 10,000 issuers and 100,000 clients would take about half an hour per backend.
Events are not cloned (the API would also have written ``issuer.created`` / ``client.created``); they
are not read on the token path.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.procs import AuthPI
from bench.seed import M2M_SCOPE, Core

SCALE_ISSUERS = 10_000
SCALE_CLIENTS = 100_000
SCALE_SPREAD = 1_000
RSA_POOL = 16


@dataclass
class Scale:
    issuers: int = 0  # in the account after seeding (the bench's own included)
    clients: int = 0
    keys: int = 0
    spread: int = 0  # clients the requests rotate over, one per issuer
    seconds: float = 0.0
    clients_file: Path = Path()  # "path client_id secret" lines for lua/token_cc_many.lua


async def _template(core: Core, server: AuthPI) -> tuple[str, str, str]:
    issuer = await core.post("/issuers", {"name": "Scale 00000"})
    issuer_id = str(issuer["id"])
    client = await core.post(
        f"/issuers/{issuer_id}/clients",
        {
            "name": "scale-00000-0",
            "type": "m2m",
            "scopes": [M2M_SCOPE],
            "settings": {"openid": {"response_signature_alg": "ES256"}},
        },
    )
    client_id, secret = str(client["id"]), str(client["secret"])
    async with httpx.AsyncClient(timeout=120) as http:  # the first token creates the issuer's keys
        r = await http.post(
            f"{server.url}/{issuer_id}/token",
            data={"grant_type": "client_credentials", "scope": M2M_SCOPE},
            auth=(client_id, secret),
        )
        r.raise_for_status()
    return issuer_id, client_id, secret


def _rsa_pool() -> list[dict[str, Any]]:
    from joserfc.jwk import RSAKey

    return [
        dict(RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig"}).as_dict(private=True))
        for _ in range(RSA_POOL)
    ]


def _key_row(box: Any, issuer_id: str, alg: str, rsa: list[dict[str, Any]], rng: random.Random) -> dict[str, Any]:
    """A signing-key row as ``authpi.oidc.keys._new_key`` writes it (RSA material from the pool,
    re-labelled with the row's own kid without re-importing it: an RSA import costs ~75 ms)."""
    from authpi.clock import now_ms
    from authpi.oidc import keys

    if alg != "RS256":
        return keys._new_key(box, issuer_id, alg)
    kid = str(uuid.uuid4())
    private = {**rng.choice(rsa), "kid": kid, "alg": alg, "use": "sig"}
    public = {k: private[k] for k in ("kty", "n", "e", "kid", "alg", "use")} | {"ext": True}
    return {
        "kid": kid,
        "issuer_id": issuer_id,
        "alg": alg,
        "public_jwk": public,
        "sealed_private": box.seal(json.dumps(private).encode(), keys._context(kid)),
        "created_at": now_ms(),
    }


async def seed_scale(
    server: AuthPI,
    work: Path,
    issuers: int = SCALE_ISSUERS,
    clients: int = SCALE_CLIENTS,
    spread: int = SCALE_SPREAD,
) -> Scale:
    """Bring the account to ``issuers`` issuers and ``clients`` clients (about clients / issuers per
    issuer); returns the ``spread`` clients (each of another issuer) the scenario rotates over."""
    from sqlalchemy import func, insert, inspect, select, text

    from authpi import ids
    from authpi.crypto import hashing
    from authpi.runtime import Runtime
    from authpi.services.clients import SECRET_PREFIX
    from authpi.settings import Settings
    from authpi.storage.tables.clients import Client
    from authpi.storage.tables.issuers import Issuer
    from authpi.storage.tables.signing_keys import SigningKey

    core = Core(server)
    try:
        template_issuer, template_client, template_secret = await _template(core, server)
    finally:
        await core.aclose()
    started = time.monotonic()
    rsa = await asyncio.to_thread(_rsa_pool)
    rng = random.Random(11)
    settings = Settings(
        data_dir=server.data_dir,
        database_url=server.database_url,
        public_url=server.url,
        rate_limits_enabled=False,
    )
    runtime = Runtime.build(settings)
    spread_lines = [f"/{template_issuer}/token {template_client} {template_secret}"]
    try:
        async with runtime.sessions() as db:
            issuer_row = await db.get(Issuer, template_issuer)
            client_row = await db.get(Client, template_client)
            key_algs = sorted(
                set(await db.scalars(select(SigningKey.alg).where(SigningKey.issuer_id == template_issuer)))
            )
            have_issuers = int(await db.scalar(select(func.count()).select_from(Issuer)) or 0)
            have_clients = int(await db.scalar(select(func.count()).select_from(Client)) or 0)
            if issuer_row is None or client_row is None or not key_algs:
                raise RuntimeError("the template issuer / client / keys are missing")
            issuer_attrs = [(a.key, a.columns[0].name) for a in inspect(Issuer).column_attrs]
            client_attrs = [(a.key, a.columns[0].name) for a in inspect(Client).column_attrs]
            issuer_base = {col: getattr(issuer_row, key) for key, col in issuer_attrs}
            client_base = {col: getattr(client_row, key) for key, col in client_attrs}
        new_issuers = max(0, issuers - have_issuers)
        new_clients = max(0, clients - have_clients)
        per_issuer = max(1, -(-new_clients // max(new_issuers, 1)))
        made_clients = made_keys = 0
        for start in range(0, new_issuers, 500):
            issuer_rows: list[dict[str, Any]] = []
            client_rows: list[dict[str, Any]] = []
            key_rows: list[dict[str, Any]] = []
            now = int(time.time() * 1000)
            for n in range(start, min(new_issuers, start + 500)):
                iid = ids.issuer_id()
                issuer_rows.append(
                    issuer_base
                    | {
                        "id": iid,
                        "name": f"Scale {n + 1:05d}",
                        "created_at": now,
                        "updated_at": now,
                        "status_at": now,
                    }
                )
                key_rows += [_key_row(runtime.secretbox, iid, alg, rsa, rng) for alg in key_algs]
                for c in range(min(per_issuer, new_clients - made_clients)):
                    secret = hashing.new_secret(SECRET_PREFIX)
                    cid = ids.client_id()
                    client_rows.append(
                        client_base
                        | {
                            "id": cid,
                            "issuer_id": iid,
                            "name": f"scale-{n + 1:05d}-{c}",
                            "secret_digest": hashing.digest(secret),
                            "created_at": now,
                            "updated_at": now,
                            "status_at": now,
                        }
                    )
                    made_clients += 1
                    if c == 0 and len(spread_lines) < spread:
                        spread_lines.append(f"/{iid}/token {cid} {secret}")
            made_keys += len(key_rows)
            async with runtime.sessions() as db:
                await db.execute(insert(Issuer.__table__), issuer_rows)
                await db.execute(insert(SigningKey.__table__), key_rows)
                if client_rows:
                    await db.execute(insert(Client.__table__), client_rows)
                await db.commit()
        if server.backend == "postgres":
            async with runtime.sessions() as db:
                for table in ("issuers", "clients", "signing_keys"):
                    await db.execute(text(f"ANALYZE {table}"))
                await db.commit()
    finally:
        await runtime.close()
    scale = Scale(
        issuers=have_issuers + new_issuers,
        clients=have_clients + made_clients,
        keys=made_keys,
        spread=len(spread_lines),
        seconds=time.monotonic() - started,
        clients_file=work / f"scale-clients-{server.backend}.txt",
    )
    rng.shuffle(spread_lines)
    scale.clients_file.write_text("\n".join(spread_lines) + "\n")
    # A few of them through the API: a clone must work exactly like the template.
    async with httpx.AsyncClient(timeout=60) as http:
        for line in spread_lines[:5]:
            path, cid, secret = line.split(" ")
            r = await http.post(
                f"{server.url}{path}",
                data={"grant_type": "client_credentials", "scope": M2M_SCOPE},
                auth=(cid, secret),
            )
            if r.status_code != 200:
                raise RuntimeError(f"a cloned client got {r.status_code}: {r.text[:300]}")
    return scale
