"""Idempotency records belong to the API key that made the first request, and the responses they keep
(new API-key and client secrets among them) are sealed at rest: a replay is answered only to that key,
and the database holds no secret in clear."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.generated.models import Issuer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from authpi.settings import Settings
from tests.core.conftest import KeyMaker, assert_error_envelope
from tests.harness import RunningServer

pytestmark = pytest.mark.anyio

Request = tuple[str, dict[str, Any] | None]  # path, JSON body
Prepare = Callable[[httpx.AsyncClient, str, Issuer], Awaitable[Request]]


@dataclass(frozen=True)
class SecretWrite:
    """A Core API write whose response carries a new secret."""

    scope: str  # what a narrower caller needs for the route
    prepare: Prepare  # → (path, JSON body or None)
    secret_field: str


async def _api_key_create(raw: httpx.AsyncClient, account_path: str, _: Issuer) -> Request:
    body = {"name": f"idem-{uuid.uuid4().hex[:8]}", "restrictions": {"scopes": ["*"]}}
    return f"{account_path}/api-keys", body


async def _api_key_rotate(raw: httpx.AsyncClient, account_path: str, _: Issuer) -> Request:
    target = await raw.post(
        f"{account_path}/api-keys", json={"name": "rotate-target", "restrictions": {"scopes": ["*"]}}
    )
    assert target.status_code == 201, target.text
    return f"{account_path}/api-keys/{target.json()['data']['id']}/rotate", None


async def _client_create(raw: httpx.AsyncClient, account_path: str, issuer: Issuer) -> Request:
    return f"{account_path}/issuers/{issuer.id}/clients", {"name": "Backend", "type": "m2m"}


async def _client_rotate(raw: httpx.AsyncClient, account_path: str, issuer: Issuer) -> Request:
    clients = f"{account_path}/issuers/{issuer.id}/clients"
    created = await raw.post(clients, json={"name": "Svc", "type": "m2m"})
    assert created.status_code == 201, created.text
    return f"{clients}/{created.json()['data']['id']}/secret/rotate", None


WRITES = {
    "api_key_create": SecretWrite("api_keys:manage", _api_key_create, "secret_plain"),
    "api_key_rotate": SecretWrite("api_keys:manage", _api_key_rotate, "secret_plain"),
    "client_create": SecretWrite("issuers.clients:write", _client_create, "secret"),
    "client_secret_rotate": SecretWrite("issuers.clients:write", _client_rotate, "secret"),
}


async def _send(
    server: RunningServer, key: Any, path: str, body: dict[str, Any] | None, idempotency_key: str
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, auth=(key.id, key.secret_plain), timeout=30) as client:
        return await client.post(path, json=body, headers={"Idempotency-Key": idempotency_key})


async def _stored_idempotency_values(server: RunningServer) -> list[str]:
    """Every value of every idempotency record, read straight from the server's database."""
    settings = Settings(
        data_dir=Path(server.env["AUTHPI_DATA_DIR"]), database_url=server.env.get("AUTHPI_DATABASE_URL")
    )
    engine = create_async_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT * FROM idempotency_records"))).all()
    finally:
        await engine.dispose()
    assert rows, "the server kept no idempotency record at all"
    return [_as_text(value) for row in rows for value in row]


def _as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("latin-1")
    return str(value)


def _sqlite_files(server: RunningServer) -> list[Path]:
    data_dir = Path(server.env["AUTHPI_DATA_DIR"])
    return [path for path in data_dir.glob("authpi.db*") if path.is_file()]


async def test_a_narrower_key_cannot_replay_an_admins_key_creation(
    server: RunningServer, make_key: KeyMaker, account_path: str, unique: str
) -> None:
    admin_key = await make_key(["*"])
    manager = await make_key(["api_keys:manage"])
    idempotency_key = str(uuid.uuid4())
    body = {"name": f"root-{unique}", "restrictions": {"scopes": ["*"]}}

    created = await _send(server, admin_key, f"{account_path}/api-keys", body, idempotency_key)
    assert created.status_code == 201, created.text
    secret = created.json()["data"]["secret_plain"]

    attempt = await _send(server, manager, f"{account_path}/api-keys", body, idempotency_key)
    assert secret not in attempt.text
    assert "idempotent-replayed" not in attempt.headers
    # Run as its own request, it meets the no-escalation rule.
    assert attempt.status_code == 403, attempt.text
    assert_error_envelope(attempt.json(), "insufficient_scope")

    replay = await _send(server, admin_key, f"{account_path}/api-keys", body, idempotency_key)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == created.json()


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
async def test_replays_are_bound_to_the_caller_and_sealed_at_rest(
    write: SecretWrite,
    server: RunningServer,
    raw: httpx.AsyncClient,
    make_key: KeyMaker,
    account_path: str,
    issuer: Issuer,
) -> None:
    owner = await make_key(["*"])
    other = await make_key([write.scope])
    path, body = await write.prepare(raw, account_path, issuer)
    idempotency_key = str(uuid.uuid4())

    first = await _send(server, owner, path, body, idempotency_key)
    assert first.status_code in (200, 201), first.text
    assert "idempotent-replayed" not in first.headers
    secret = first.json()["data"][write.secret_field]
    assert secret

    # The original caller's retry gets the very same answer, as the SDK expects.
    replay = await _send(server, owner, path, body, idempotency_key)
    assert replay.status_code == first.status_code
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    assert replay.headers.get("etag") == first.headers.get("etag")

    stored = await _stored_idempotency_values(server)
    assert not [value for value in stored if secret in value], "a secret is stored in clear"
    for path_on_disk in _sqlite_files(server):
        assert secret.encode() not in path_on_disk.read_bytes(), f"{path_on_disk.name} holds the secret"

    # Another key using the same Idempotency-Key runs its own request; it never sees the stored one.
    theirs = await _send(server, other, path, body, idempotency_key)
    assert "idempotent-replayed" not in theirs.headers
    assert secret not in theirs.text


async def test_each_caller_replays_its_own_response(
    server: RunningServer, raw: httpx.AsyncClient, make_key: KeyMaker, account_path: str, issuer: Issuer
) -> None:
    first_key = await make_key(["issuers.clients:write"])
    second_key = await make_key(["issuers.clients:write"])
    path, body = await _client_create(raw, account_path, issuer)
    idempotency_key = str(uuid.uuid4())

    mine = await _send(server, first_key, path, body, idempotency_key)
    theirs = await _send(server, second_key, path, body, idempotency_key)
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["data"]["id"] != theirs.json()["data"]["id"]
    for key, original in ((first_key, mine), (second_key, theirs)):
        again = await _send(server, key, path, body, idempotency_key)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == original.json()


async def test_a_key_narrowed_since_does_not_get_the_stored_secret_again(
    server: RunningServer, admin: AuthPIAdmin, make_key: KeyMaker, account_path: str, unique: str
) -> None:
    caller = await make_key(["*"])
    idempotency_key = str(uuid.uuid4())
    body = {"name": f"root-{unique}", "restrictions": {"scopes": ["*"]}}
    created = await _send(server, caller, f"{account_path}/api-keys", body, idempotency_key)
    assert created.status_code == 201, created.text
    secret = created.json()["data"]["secret_plain"]

    await admin.api_keys.update(caller.id, {"restrictions": {"scopes": ["api_keys:manage"]}})
    replay = await _send(server, caller, f"{account_path}/api-keys", body, idempotency_key)
    assert replay.status_code == 403, replay.text
    assert_error_envelope(replay.json(), "insufficient_scope")
    assert secret not in replay.text
