"""Seeding through the Core API (issuers, auth method, clients, password users, tokens), plus the
100,000-user directory for the list-depth scenario, which is bulk-inserted with SQL.

Why SQL for the directory: each Core API ``POST user`` is one request with a uniqueness check and a
commit; at the rates this benchmark measures for it (see the ``core_post_user`` row) 100,000 of them
would take minutes per backend, the bulk of the whole run's time budget. The rows written here
carry exactly the columns ``POST user`` writes for a password-less user (same ID format, same
normalised username key and hash), so the list endpoint sees the same data it would after API
seeding. On PostgreSQL the table is ANALYZEd afterwards (autovacuum would do it within a minute
anyway; doing it now makes the run deterministic); SQLite is left as the server leaves it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.flows import Browser, WebClient
from bench.procs import AuthPI

REDIRECT_URI = "http://127.0.0.1:9/cb"
LOGIN_PASSWORD = "correct horse battery staple"
M2M_SCOPE = "invoices:read"
DIRECTORY_USERS = 100_000
PAGE_SIZE = 50
DEEP_PAGE = 2_000


@dataclass
class M2M:
    client_id: str
    client_secret: str
    alg: str


@dataclass
class Seeded:
    issuer_id: str
    issuer_url: str
    m2m: dict[str, M2M]  # by alg
    web: WebClient
    login_users: list[str]
    directory_issuer_id: str = ""
    directory_user_id: str = ""  # a user to GET
    deep_cursor: str = ""  # cursor that yields page DEEP_PAGE of the directory
    directory_seconds: float = 0.0
    write_issuer_id: str = ""  # POST user target
    access_token: str = ""  # a live user access token (userinfo, introspect)
    timings: dict[str, float] = field(default_factory=dict)


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Core:
    """A tiny Core API client (Basic auth with the bootstrap API key)."""

    def __init__(self, server: AuthPI) -> None:
        self.server = server
        self.base = f"{server.url}/v1/accounts/{server.account_id}"
        self.auth_header = basic_header(server.key_id, server.key_secret)
        self.http = httpx.AsyncClient(
            headers={"Authorization": self.auth_header},
            timeout=120,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def post(self, path: str, body: dict[str, object]) -> dict[str, object]:
        r = await self.http.post(f"{self.base}{path}", json=body)
        if r.status_code >= 300:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:500]}")
        data: dict[str, object] = r.json()["data"]
        return data


async def _issuer(core: Core, name: str, *, password: bool) -> str:
    issuer = await core.post("/issuers", {"name": name})
    issuer_id = str(issuer["id"])
    if password:
        await core.post(
            f"/issuers/{issuer_id}/auth-methods",
            {"name": "Password", "method": "password", "first_factor_only": True, "settings": {}},
        )
    return issuer_id


async def seed_core(server: AuthPI, login_users: int = 16) -> Seeded:
    """The OIDC issuer (password login, an M2M client per algorithm, a web client, users with
    passwords), a second issuer for POST user, and a live user access token."""
    core = Core(server)
    try:
        issuer_id = await _issuer(core, "Bench", password=True)
        m2m: dict[str, M2M] = {}
        for alg in ("ES256", "RS256"):
            created = await core.post(
                f"/issuers/{issuer_id}/clients",
                {
                    "name": f"bench-m2m-{alg}",
                    "type": "m2m",
                    "scopes": [M2M_SCOPE],
                    "settings": {"openid": {"response_signature_alg": alg}},
                },
            )
            m2m[alg] = M2M(str(created["id"]), str(created["secret"]), alg)
        web = await core.post(
            f"/issuers/{issuer_id}/clients",
            {
                "name": "bench-web",
                "type": "web",
                "settings": {"openid": {"redirect_uris": [REDIRECT_URI], "response_signature_alg": "ES256"}},
            },
        )
        usernames = [f"login{i}@bench.example.com" for i in range(login_users)]
        await asyncio.gather(
            *(
                core.post(
                    f"/issuers/{issuer_id}/users",
                    {"username_type": "email", "username": name, "password": LOGIN_PASSWORD},
                )
                for name in usernames
            )
        )
        write_issuer = await _issuer(core, "Bench writes", password=False)
        seeded = Seeded(
            issuer_id=issuer_id,
            issuer_url=f"{server.url}/{issuer_id}",
            m2m=m2m,
            web=WebClient(f"{server.url}/{issuer_id}", str(web["id"]), str(web["secret"]), REDIRECT_URI),
            login_users=usernames,
            write_issuer_id=write_issuer,
        )
        browser = Browser(seeded.web)
        try:
            code, verifier = await browser.login(usernames[0], LOGIN_PASSWORD)
            seeded.access_token = (await browser.exchange(code, verifier)).access_token
        finally:
            await browser.aclose()
        return seeded
    finally:
        await core.aclose()


# --- the 100,000-user directory ------------------------------------------------------------------


def _user_rows(issuer_id: str, count: int) -> list[tuple[object, ...]]:
    from authpi import ids  # the server's own ID format (time-ordered, base-36)

    now = int(time.time() * 1000)
    rows = []
    for i in range(count):
        username = f"user{i:06d}@directory.example.com"
        rows.append(
            (
                ids.user_id(),
                issuer_id,
                "email",
                username,
                username,  # e-mail keys are the lower-cased address
                hashlib.sha256(username.encode()).hexdigest(),
                "active",
                now,
                json.dumps({"first_name": f"User {i}"}),
                "{}",
                0,
                now,
                now,
            )
        )
    return rows


_COLUMNS = (
    "id, issuer_id, username_type, username, username_key, username_hash, status, status_at, "
    "profile, metadata, password_failures, created_at, updated_at"
)


def _sqlite_insert(db_path: Path, rows: list[tuple[object, ...]]) -> None:
    conn = sqlite3.connect(db_path, timeout=60)
    try:
        conn.execute("PRAGMA busy_timeout=60000")
        with conn:
            conn.executemany(f"INSERT INTO users ({_COLUMNS}) VALUES ({','.join('?' * 13)})", rows)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def _pg_insert(url: str, rows: list[tuple[object, ...]]) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        columns = [c.strip() for c in _COLUMNS.split(",")]
        await conn.copy_records_to_table("users", records=rows, columns=columns)
        await conn.execute("ANALYZE users")
    finally:
        await conn.close()


async def _walk_cursor(server: AuthPI, issuer_id: str, page: int) -> str:
    """Cursor of page ``page`` (1-based) = ID of the last user of page ``page - 1``: found with SQL
    rather than by walking 1,999 pages."""
    offset = (page - 1) * PAGE_SIZE - 1
    sql = (
        "SELECT id FROM users WHERE issuer_id = {p} AND status <> 'deleted' "
        f"ORDER BY id DESC LIMIT 1 OFFSET {offset}"
    )
    if server.backend == "sqlite":
        conn = sqlite3.connect(server.data_dir / "authpi.db")
        try:
            row = conn.execute(sql.format(p="?"), (issuer_id,)).fetchone()
        finally:
            conn.close()
        return str(row[0])
    import asyncpg

    assert server.database_url
    conn2 = await asyncpg.connect(server.database_url)
    try:
        value = await conn2.fetchval(sql.format(p="$1"), issuer_id)
    finally:
        await conn2.close()
    return str(value)


async def seed_directory(server: AuthPI, seeded: Seeded, count: int = DIRECTORY_USERS) -> None:
    core = Core(server)
    try:
        seeded.directory_issuer_id = await _issuer(core, "Directory", password=False)
    finally:
        await core.aclose()
    started = time.monotonic()
    rows = _user_rows(seeded.directory_issuer_id, count)
    if server.backend == "sqlite":
        await asyncio.to_thread(_sqlite_insert, server.data_dir / "authpi.db", rows)
    else:
        assert server.database_url
        await _pg_insert(server.database_url, rows)
    seeded.directory_seconds = time.monotonic() - started
    seeded.directory_user_id = str(rows[count // 2][0])
    pages = -(-count // PAGE_SIZE)
    seeded.deep_cursor = await _walk_cursor(server, seeded.directory_issuer_id, min(DEEP_PAGE, pages))
    # Check the cursor through the API: page DEEP_PAGE must come back full.
    async with httpx.AsyncClient(timeout=60) as http:
        r = await http.get(
            f"{server.url}/v1/accounts/{server.account_id}/issuers/{seeded.directory_issuer_id}/users",
            params={"limit": PAGE_SIZE, "cursor": seeded.deep_cursor},
            headers={"Authorization": basic_header(server.key_id, server.key_secret)},
        )
        r.raise_for_status()
        if len(r.json()["data"]) != PAGE_SIZE:
            raise RuntimeError(f"page {DEEP_PAGE} has {len(r.json()['data'])} users")


# --- refresh-token pools -------------------------------------------------------------------------


async def refresh_pool(seeded: Seeded, count: int, concurrency: int = 12) -> tuple[list[str], float]:
    """``count`` fresh, unused refresh tokens, each in its own rp session (one code exchange each).

    Each generator signs in once with a password, then asks /authorize for new codes with its session
    cookie (no password step), so the pool costs two requests per token, not an argon2 hash.
    Returns "client_id client_secret refresh_token" lines and the seconds it took."""
    started = time.monotonic()
    lines: list[str] = []
    web = seeded.web
    remaining = [count]

    async def generator(slot: int) -> None:
        browser = Browser(web)
        try:
            user = seeded.login_users[slot % len(seeded.login_users)]
            code, verifier = await browser.login(user, LOGIN_PASSWORD)
            tokens = await browser.exchange(code, verifier)
            while True:
                if tokens.refresh_token:
                    lines.append(f"{web.client_id} {web.client_secret} {tokens.refresh_token}")
                remaining[0] -= 1
                if remaining[0] <= 0:
                    return
                code, verifier = await browser.authorize_signed_in()
                tokens = await browser.exchange(code, verifier)
        finally:
            await browser.aclose()

    await asyncio.gather(*(generator(i) for i in range(concurrency)))
    return lines[:count], time.monotonic() - started


def _jwt_parts(token: str) -> tuple[dict[str, object], dict[str, object]]:
    def part(segment: str) -> dict[str, object]:
        value: dict[str, object] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        return value

    header, payload, _ = token.split(".")
    return part(header), part(payload)


async def minted_refresh_pool(server: AuthPI, seeded: Seeded, count: int) -> tuple[list[str], float]:
    """``count`` refresh tokens minted the way a code exchange mints them, without the HTTP round
    trips (which cost ~25 ms of server time per token and would dominate the run's time budget).

    One real login and code exchange produce a genuine rp session and refresh token; each pool token
    is a clone of that state: a new rp session row (same user, client, op session), a new
    ``refresh_tokens`` row, and a JWT signed by the server's own code (``authpi.oidc.tokens``) with
    the issuer's active key. To the refresh endpoint they are indistinguishable from tokens issued
    by ``/token``; ``check_pool`` spends one of them over HTTP before the run to prove it."""
    from sqlalchemy import insert, inspect

    from authpi import ids
    from authpi.oidc import tokens as token_codec
    from authpi.runtime import Runtime
    from authpi.settings import Settings
    from authpi.storage.tables.oauth import RefreshToken
    from authpi.storage.tables.sessions import Session

    started = time.monotonic()
    browser = Browser(seeded.web)
    try:
        code, verifier = await browser.login(seeded.login_users[0], LOGIN_PASSWORD)
        template_token = (await browser.exchange(code, verifier)).refresh_token
    finally:
        await browser.aclose()
    if not template_token:
        raise RuntimeError("the web client got no refresh token")
    header, claims = _jwt_parts(template_token)
    settings = Settings(
        data_dir=server.data_dir,
        database_url=server.database_url,
        public_url=server.url,
        rate_limits_enabled=False,
    )
    runtime = Runtime.build(settings)
    try:
        keys = await runtime.keys.get(seeded.issuer_id)
        async with runtime.sessions() as db:
            rp = await db.get(Session, str(claims["sid"]))
            family = await db.get(RefreshToken, str(claims["jti"]))
            if rp is None or family is None:
                raise RuntimeError("template rp session / refresh token not found")
            session_attrs = [(a.key, a.columns[0].name) for a in inspect(Session).column_attrs]
            token_attrs = [(a.key, a.columns[0].name) for a in inspect(RefreshToken).column_attrs]
            now = int(time.time() * 1000)
            ttl = int(claims["exp"]) - int(claims["iat"])  # type: ignore[call-overload]
            session_rows, token_rows, lines = [], [], []
            for _ in range(count):
                sid = ids.session_id()
                session_rows.append(
                    {col: getattr(rp, key) for key, col in session_attrs}
                    | {"id": sid, "created_at": now, "updated_at": now, "last_activity_at": now}
                )
                minted = token_codec.refresh_token(
                    keys,
                    str(header["alg"]),
                    iss=str(claims["iss"]),
                    sub=str(claims["sub"]),
                    client_id=str(claims["client_id"]),
                    sid=sid,
                    scope=str(claims["scope"]),
                    ttl=ttl,
                )
                token_rows.append(
                    {col: getattr(family, key) for key, col in token_attrs}
                    | {
                        "jti": minted.jti,
                        "session_id": sid,
                        "status": "active",
                        "created_at": now,
                        "expires_at": minted.exp * 1000,
                    }
                )
                lines.append(f"{seeded.web.client_id} {seeded.web.client_secret} {minted.token}")
            for start in range(0, count, 2000):
                await db.execute(insert(Session.__table__), session_rows[start : start + 2000])
                await db.execute(insert(RefreshToken.__table__), token_rows[start : start + 2000])
            await db.commit()
    finally:
        await runtime.close()
    return lines, time.monotonic() - started


async def check_pool(seeded: Seeded, line: str) -> None:
    """Spend one pool token over HTTP: it must rotate (200 with a new refresh token)."""
    client_id, secret, token = line.split(" ")
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            f"{seeded.issuer_url}/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            auth=(client_id, secret),
        )
    if r.status_code != 200 or "refresh_token" not in r.json():
        raise RuntimeError(f"pool token rejected: {r.status_code} {r.text[:300]}")
