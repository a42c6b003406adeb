"""In-process cost of loading many issuers' signing keys (the "many-issuer token endpoint" finding in
bench/README.md): no server, no HTTP, one process, a throw-away SQLite database.

    PYTHONPATH=src .venv/bin/python -m bench.key_loading [issuers]

Seeds ``issuers`` issuers with one active key per algorithm (the same three key pairs sealed under
a distinct kid each: importing costs the same as for distinct keys, and seeding stays fast), then
times, over every issuer, with ``oidc.keys.KeyCache``:

- ``cold``: the first load of each issuer's keys (a worker after a start);
- ``reload``: a load once the freshness window has run out (every ``AUTHPI_KEY_CACHE_SECONDS``);
- ``evicted``: a load after an eviction of the issuer's keys (a rotation elsewhere, a reconnect);
- ``sign RS256`` / ``sign ES256``: signing one token per issuer right after a reload.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from joserfc.jwk import ECKey, OKPKey, RSAKey
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from authpi.clock import now_ms
from authpi.crypto.secretbox import SecretBox
from authpi.oidc import keys as keys_module
from authpi.oidc import tokens
from authpi.storage.tables.base import Base
from authpi.storage.tables.signing_keys import SigningKey

TEMPLATES: dict[str, Any] = {
    "ES256": ECKey.generate_key("P-256"),
    "EdDSA": OKPKey.generate_key("Ed25519"),
    "RS256": RSAKey.generate_key(2048),
}


def _rows(box: SecretBox, issuer_id: str) -> list[dict[str, Any]]:
    rows = []
    for alg, template in TEMPLATES.items():
        kid = str(uuid.uuid4())
        private = {**template.as_dict(private=True), "kid": kid, "alg": alg, "use": "sig"}
        public = {**template.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig", "ext": True}
        rows.append(
            {
                "kid": kid,
                "issuer_id": issuer_id,
                "alg": alg,
                "public_jwk": public,
                "sealed_private": box.seal(json.dumps(private).encode(), f"signing_key:{kid}"),
                "created_at": now_ms(),
            }
        )
    return rows


async def _timed(label: str, issuer_ids: list[str], step: Callable[[str], Awaitable[Any]]) -> None:
    started_cpu, started = time.process_time(), time.perf_counter()
    for issuer_id in issuer_ids:
        await step(issuer_id)
    wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    per = wall / len(issuer_ids) * 1000
    print(f"{label:<12} {len(issuer_ids):>6} issuers {wall:7.2f} s wall {cpu:7.2f} s CPU {per:6.2f} ms each")


def _signer(keys: Any, alg: str) -> Any:
    return tokens._sign(keys, alg, {"iss": "bench", "sub": "s", "exp": 2**31})


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        engine = create_async_engine(f"sqlite+aiosqlite:///{os.path.join(folder, 'keys.db')}")
        async with engine.begin() as conn:
            # No issuer rows: this connection does not turn SQLite's foreign key checks on.
            await conn.run_sync(Base.metadata.create_all)
        box = SecretBox(os.urandom(32))
        issuer_ids = [f"i_bench{n:06d}" for n in range(count)]
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions() as session:
            for issuer_id in issuer_ids:
                await session.execute(insert(SigningKey), _rows(box, issuer_id))
            await session.commit()

        cache = keys_module.KeyCache(sessions, box, fresh_for=1e-9, stale_for=0.0)  # every get reloads
        await _timed("cold", issuer_ids, cache.get)
        await _timed("reload", issuer_ids, cache.get)

        async def evicted(issuer_id: str) -> Any:
            cache.evict(keys_module.SIGNING_KEYS, issuer_id)
            return await cache.get(issuer_id)

        await _timed("evicted", issuer_ids, evicted)

        async def sign(alg: str) -> Callable[[str], Awaitable[Any]]:
            async def step(issuer_id: str) -> Any:
                return _signer(await cache.get(issuer_id), alg)

            return step

        await _timed("sign ES256", issuer_ids, await sign("ES256"))
        await _timed("sign RS256", issuer_ids, await sign("RS256"))
        await _timed("sign RS256", issuer_ids, await sign("RS256"))
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
