"""Signing keys stay single under concurrency: workers racing for a new issuer's first keys create
one key per algorithm between them, every worker publishes and verifies with those keys, and
rotations started at once (`authpi keys rotate` in several processes, the housekeeping pass)
leave one active key per algorithm."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from authpi_admin import AuthPIAdmin
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from authpi import data_dir
from authpi.settings import Settings
from authpi.storage.migrate import alembic_config
from tests.conftest import BACKENDS, skip_without_postgres
from tests.db_query import rows
from tests.harness import RunningServer, database, run_server
from tests.oidc.helpers import ALGORITHMS, Realm, describe, new_realm

pytestmark = pytest.mark.anyio

RACERS = 48  # requests fired at once at an issuer without keys
REPEATS = 40  # fresh connections afterwards, so every worker answers some


@pytest.fixture(scope="module", params=BACKENDS)
def workers(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    skip_without_postgres(request.param)
    with run_server(request.param, workers=4) as running:
        yield running


def _kid(token: str) -> str:
    return str(json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"])


async def _active_keys(server: RunningServer, issuer_id: str) -> list[tuple[str, str]]:
    found = await rows(
        server, "SELECT alg, kid FROM signing_keys WHERE issuer_id = ? AND retired_at IS NULL", issuer_id
    )
    return sorted((str(alg), str(kid)) for alg, kid in found)


async def _fresh(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request on a connection of its own (the kernel hands it to any worker)."""
    async with httpx.AsyncClient(timeout=60) as http:
        return await http.request(method, url, **kwargs)


async def _race_for_keys(realm: Realm, m2m_id: str, m2m_secret: str) -> list[httpx.Response]:
    """JWKS and client_credentials requests all at once, against an issuer that has no keys yet."""
    jwks = [_fresh("GET", f"{realm.url}/jwks.json") for _ in range(RACERS // 2)]
    tokens = [
        _fresh(
            "POST", f"{realm.url}/token", data={"grant_type": "client_credentials"}, auth=(m2m_id, m2m_secret)
        )
        for _ in range(RACERS // 2)
    ]
    responses = await asyncio.gather(*jwks, *tokens)
    for response in responses:
        assert response.status_code == 200, describe(response)
    return list(responses)


async def test_workers_racing_for_the_first_keys_share_one_key_per_algorithm(workers: RunningServer) -> None:
    async with AuthPIAdmin(api_key=workers.api_key, base_url=workers.url) as admin:
        realm = await new_realm(admin, workers)
        m2m = await realm.client("m2m", scopes=["reports:read"])
        web = await realm.client("web")
        user = f"race-{realm.id[-6:]}@example.com"
        await realm.user(user)
        assert m2m.secret

        raced = await _race_for_keys(realm, m2m.id, m2m.secret)

        active = await _active_keys(workers, realm.id)
        assert [alg for alg, _ in active] == sorted(ALGORITHMS), f"one active key per algorithm: {active}"
        all_keys = await rows(workers, "SELECT COUNT(*) FROM signing_keys WHERE issuer_id = ?", realm.id)
        assert all_keys[0][0] == len(ALGORITHMS), "a losing worker must not leave keys behind"
        kids = {kid for _, kid in active}

        # Every worker publishes the same key set, the one in the database.
        bodies = {r.text for r in raced if r.request.url.path.endswith("/jwks.json")}
        again = await asyncio.gather(*(_fresh("GET", f"{realm.url}/jwks.json") for _ in range(REPEATS)))
        bodies |= {r.text for r in again}
        assert len(bodies) == 1, f"workers publish {len(bodies)} different key sets"
        assert {k["kid"] for k in json.loads(bodies.pop())["keys"]} == kids
        for response in raced:
            if response.request.url.path.endswith("/token"):
                assert _kid(response.json()["access_token"]) in kids

        # A refresh token minted by one worker is accepted by whichever worker gets it next, and so
        # are the access tokens (each request below is a new connection).
        tokens = await realm.tokens(web, user)
        refresh = tokens["refresh_token"]
        for _ in range(12):
            response = await realm.refresh(web, refresh)
            assert response.status_code == 200, describe(response)
            refresh = response.json()["refresh_token"]
            access = response.json()["access_token"]
            assert _kid(access) in kids
        userinfo = await asyncio.gather(
            *(
                _fresh("GET", f"{realm.url}/userinfo", headers={"Authorization": f"Bearer {access}"})
                for _ in range(REPEATS)
            )
        )
        assert [r.status_code for r in userinfo] == [200] * REPEATS
    assert workers.tracebacks() == []


def _rotate(server: RunningServer) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "authpi", "keys", "rotate"],
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module", params=BACKENDS)
def busy_housekeeping(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    skip_without_postgres(request.param)
    env = {"AUTHPI_HOUSEKEEPING_INTERVAL": "0.2", "AUTHPI_KEY_CACHE_SECONDS": "0.5"}
    with run_server(request.param, env, workers=2) as running:
        yield running


async def test_concurrent_rotations_leave_one_active_key_per_algorithm(
    busy_housekeeping: RunningServer,
) -> None:
    server = busy_housekeeping
    async with AuthPIAdmin(api_key=server.api_key, base_url=server.url) as admin:
        realm = await new_realm(admin, server)
    first = await _fresh("GET", f"{realm.url}/jwks.json")
    assert first.status_code == 200
    # Make the keys a month old, so the housekeeping pass (every 0.2 s) rotates them while three
    # `authpi keys rotate` processes force a rotation at the same time.
    await rows(
        server,
        "UPDATE signing_keys SET created_at = created_at - ? WHERE issuer_id = ?",
        31 * 86400 * 1000,
        realm.id,
    )
    rotations = [_rotate(server) for _ in range(3)]
    outcomes = [process.communicate(timeout=120) for process in rotations]
    for process, (out, err) in zip(rotations, outcomes, strict=True):
        assert process.returncode == 0, err
        assert "created" in json.loads(out)

    await asyncio.sleep(1)  # the housekeeping pass after the rotations (nothing due any more)
    active = await _active_keys(server, realm.id)
    assert [alg for alg, _ in active] == sorted(ALGORITHMS), f"one active key per algorithm: {active}"
    published = (await _fresh("GET", f"{realm.url}/jwks.json")).json()["keys"]
    for _ in range(20):
        if {k["kid"] for k in published} >= {kid for _, kid in active}:
            break
        await asyncio.sleep(0.2)
        published = (await _fresh("GET", f"{realm.url}/jwks.json")).json()["keys"]
    assert {k["kid"] for k in published} >= {kid for _, kid in active}
    assert server.tracebacks() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_upgrade_retires_the_extra_keys_an_earlier_race_left_active(backend: str, tmp_path: Path) -> None:
    """Databases where the race already happened keep only the newest key per algorithm active;
    the others stay published for 45 days, as after a rotation."""
    skip_without_postgres(backend)
    with database(backend, tmp_path) as url:
        settings = Settings(data_dir=tmp_path / "data", database_url=url)
        data_dir.prepare(settings.data_dir, database=settings.sqlite_path)
        config = alembic_config(settings)
        command.upgrade(config, "0004")
        keys = [("old", "ES256", 1), ("new", "ES256", 2), ("same-a", "RS256", 5), ("same-b", "RS256", 5)]
        asyncio.run(_insert_keys(settings, keys))
        command.upgrade(config, "head")
        found = asyncio.run(_key_states(settings))
    assert found["new"] == (None, None) and found["same-b"] == (None, None)
    for kid in ("old", "same-a"):
        retired_at, unpublish_at = found[kid]
        assert retired_at is not None and unpublish_at == retired_at + 45 * 86400 * 1000


async def _insert_keys(settings: Settings, keys: list[tuple[str, str, int]]) -> None:
    engine = create_async_engine(settings.resolved_database_url)
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":  # the issuer need not exist for this check
                await connection.execute(text("SET session_replication_role = replica"))
            for kid, alg, created_at in keys:
                await connection.execute(
                    text(
                        "INSERT INTO signing_keys (kid, issuer_id, alg, public_jwk, sealed_private, "
                        "created_at) VALUES (:kid, 'i_x', :alg, '{}', 'sealed', :created_at)"
                    ),
                    {"kid": kid, "alg": alg, "created_at": created_at},
                )
    finally:
        await engine.dispose()


async def _key_states(settings: Settings) -> dict[str, tuple[int | None, int | None]]:
    engine = create_async_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text("SELECT kid, retired_at, unpublish_at FROM signing_keys"))
            return {str(kid): (retired_at, unpublish_at) for kid, retired_at, unpublish_at in result}
    finally:
        await engine.dispose()
