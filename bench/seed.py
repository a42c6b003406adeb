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
from collections.abc import Iterable, Iterator
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
                now,
                now,
            )
        )
    return rows


_COLUMNS = (
    "id, issuer_id, username_type, username, username_key, username_hash, status, status_at, "
    "profile, metadata, created_at, updated_at"
)


def _sqlite_insert(db_path: Path, rows: list[tuple[object, ...]]) -> None:
    conn = sqlite3.connect(db_path, timeout=60)
    try:
        conn.execute("PRAGMA busy_timeout=60000")
        with conn:
            conn.executemany(f"INSERT INTO users ({_COLUMNS}) VALUES ({','.join('?' * 12)})", rows)
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


# --- the 1,000,000-event log ----------------------------------------------------------------------

EVENTS = 1_000_000
EVENTS_DEEP_PAGE = 20_000
EVENTS_DAYS = 30  # well inside the default retention (90 days), so the purge leaves them alone
# Real traffic is mostly sign-ins and token refreshes, a little account administration.
EVENT_WEIGHTS = {
    "session.token-refreshed": 40,
    "session.created": 15,
    "user.signed-in": 10,
    "auth.flow.succeeded": 5,
    "user.updated": 6,
    "user.created": 5,
    "session.terminated": 4,
    "user.password.changed": 1,
    "user.deleted": 1,
}
EVENTS_FILTER_TYPE = "session.token-refreshed"  # core_events_filtered_deep: event_types=<this>
_EVENT_COLUMNS = (
    "id", "account_id", "type", "issuer_id", "user_id", "client_id", "timestamp", "trace", "source",
    "trigger", "auth", "subject", "data",
)


@dataclass
class EventLog:
    count: int = 0
    seconds: float = 0.0
    types: dict[str, int] = field(default_factory=dict)  # generated rows per type
    deep_cursor: str = ""  # last ID of page EVENTS_DEEP_PAGE - 1 (all events)
    deep_page: int = 0
    filtered_cursor: str = ""  # the same, within event_types=EVENTS_FILTER_TYPE
    filtered_page: int = 0
    filtered_type: str = EVENTS_FILTER_TYPE
    templates: list[str] = field(default_factory=list)  # the types the seeding emitted (cloned)


async def _event_templates(server: AuthPI) -> list[dict[str, object]]:
    """The events the Core API seeding and the login just wrote, as stored (JSON decoded)."""
    sql = f"SELECT {', '.join(_EVENT_COLUMNS)} FROM events WHERE account_id = {{p}}"
    if server.backend == "sqlite":
        conn = sqlite3.connect(server.data_dir / "authpi.db")
        try:
            rows = [tuple(r) for r in conn.execute(sql.format(p="?"), (server.account_id,))]
        finally:
            conn.close()
    else:
        import asyncpg

        assert server.database_url
        pg = await asyncpg.connect(server.database_url)
        try:
            rows = [tuple(r) for r in await pg.fetch(sql.format(p="$1"), server.account_id)]
        finally:
            await pg.close()
    out = []
    for row in rows:
        event = dict(zip(_EVENT_COLUMNS, row, strict=True))
        for key in ("auth", "subject", "data"):
            if isinstance(event[key], str):
                event[key] = json.loads(event[key])
        out.append(event)
    return out


def _replace_ids(value: object, swap: dict[str, str]) -> object:
    """``value`` with every string ID of the template swapped for the generated row's."""
    if isinstance(value, dict):
        return {k: _replace_ids(v, swap) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_ids(v, swap) for v in value]
    if isinstance(value, str):
        return swap.get(value, value)
    return value


class _EventFactory:
    """Rows as ``events.emit`` writes them, cloned from real templates of each type and spread over
    issuers, users, clients and the last ``EVENTS_DAYS`` days like real traffic: a few issuers, a
    skewed user population (some users sign in far more than others), IDs and traces fresh per row."""

    def __init__(self, templates: list[dict[str, object]], issuers: list[str], users: int, seed: int = 7) -> None:
        import random

        from authpi import ids

        self.random = random.Random(seed)
        by_type: dict[str, list[dict[str, object]]] = {}
        for t in templates:
            by_type.setdefault(str(t["type"]), []).append(t)
        weighted = {k: w for k, w in EVENT_WEIGHTS.items() if k in by_type}
        for kind in by_type:  # every other type the seeding emitted (issuer.created, ...) is rare
            weighted.setdefault(kind, 0.2)
        self.kinds, self.weights = list(weighted), list(weighted.values())
        self.by_type = by_type
        self.issuers = issuers
        self.clients = {iss: [ids.client_id() for _ in range(3)] for iss in issuers}
        self.users = [ids.user_id() for _ in range(users)]
        self.ids = ids
        self.now = int(time.time() * 1000) - 60_000
        self.span = EVENTS_DAYS * 86_400_000

    def rows(self, count: int) -> Iterator[dict[str, object]]:
        """``count`` rows, oldest first: inserted in ID order, the primary key and the ``…, id``
        indexes grow at their ends instead of splitting pages all over a 1.5 GB file (SQLite took
        minutes for a random order)."""
        step = self.span / max(count, 1)
        for i in range(count):
            yield self.row(self.now - self.span + int((i + self.random.random()) * step))

    def row(self, at: int) -> dict[str, object]:
        r = self.random
        template = r.choice(self.by_type[r.choices(self.kinds, self.weights)[0]])
        issuer = self.issuers[min(int(r.random() ** 2 * len(self.issuers)), len(self.issuers) - 1)]
        user = self.users[min(int(r.random() ** 3 * len(self.users)), len(self.users) - 1)]
        client = r.choice(self.clients[issuer])
        swap: dict[str, str] = {}
        if template["issuer_id"]:
            swap[str(template["issuer_id"])] = issuer
        if template["user_id"]:
            swap[str(template["user_id"])] = user
        if template["client_id"]:
            swap[str(template["client_id"])] = client
        subject = template["subject"]
        if isinstance(subject, dict) and subject.get("id") and str(subject["id"]) not in swap:
            swap[str(subject["id"])] = f"{str(subject['id']).split('_')[0]}_{secrets_hex(10)}"
        return {
            "id": self.ids.ulid("evt_", at),
            "account_id": template["account_id"],
            "type": template["type"],
            "issuer_id": issuer if template["issuer_id"] else None,
            "user_id": user if template["user_id"] else None,
            "client_id": client if template["client_id"] else None,
            "timestamp": at,
            "trace": secrets_hex(12),
            "source": template["source"],
            "trigger": template["trigger"],
            "auth": _replace_ids(template["auth"], swap),
            "subject": _replace_ids(subject, swap),
            "data": _replace_ids(template["data"], swap),
        }


def secrets_hex(n: int) -> str:
    import secrets

    return secrets.token_hex(n)


def _json(value: object) -> str | None:
    # SQLAlchemy's JSON type stores json.dumps(value) with the default separators.
    return None if value is None else json.dumps(value)


def _sqlite_events(db_path: Path, chunks: Iterable[list[dict[str, object]]]) -> None:
    conn = sqlite3.connect(db_path, timeout=60)
    try:
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute("PRAGMA cache_size=-262144")  # 256 MB for this connection: six indexes grow at once
        sql = f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) VALUES ({','.join('?' * len(_EVENT_COLUMNS))})"
        for chunk in chunks:
            with conn:
                conn.executemany(
                    sql,
                    [
                        tuple(_json(e[c]) if c in ("auth", "subject", "data") else e[c] for c in _EVENT_COLUMNS)
                        for e in chunk
                    ],
                )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def _pg_events(url: str, chunks: Iterable[list[dict[str, object]]]) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for chunk in chunks:
            await conn.copy_records_to_table(
                "events",
                records=[
                    tuple(_json(e[c]) if c in ("auth", "subject", "data") else e[c] for c in _EVENT_COLUMNS)
                    for e in chunk
                ],
                columns=list(_EVENT_COLUMNS),
            )
        await conn.execute("ANALYZE events")
    finally:
        await conn.close()


async def _refresh_once(seeded: Seeded) -> None:
    browser = Browser(seeded.web)
    try:
        code, verifier = await browser.login(seeded.login_users[-1], LOGIN_PASSWORD)
        token = (await browser.exchange(code, verifier)).refresh_token
    finally:
        await browser.aclose()
    await check_pool(seeded, f"{seeded.web.client_id} {seeded.web.client_secret} {token}")


async def _event_cursor(server: AuthPI, page: int, event_type: str | None) -> str:
    """Cursor of page ``page`` (1-based) of the events list = ID of the last event of page
    ``page - 1``, newest first, exactly as the route encodes it (the last ID returned)."""
    offset = (page - 1) * PAGE_SIZE - 1
    typed = " AND type = {p2}" if event_type else ""
    sql = f"SELECT id FROM events WHERE account_id = {{p}}{typed} ORDER BY id DESC LIMIT 1 OFFSET {offset}"
    params: tuple[str, ...] = (server.account_id, event_type) if event_type else (server.account_id,)
    if server.backend == "sqlite":
        conn = sqlite3.connect(server.data_dir / "authpi.db")
        try:
            row = conn.execute(sql.format(p="?", p2="?"), params).fetchone()
        finally:
            conn.close()
        return str(row[0])
    import asyncpg

    assert server.database_url
    pg = await asyncpg.connect(server.database_url)
    try:
        return str(await pg.fetchval(sql.format(p="$1", p2="$2"), *params))
    finally:
        await pg.close()


async def _count_events(server: AuthPI, event_type: str) -> int:
    sql = "SELECT count(*) FROM events WHERE account_id = {p} AND type = {p2}"
    if server.backend == "sqlite":
        conn = sqlite3.connect(server.data_dir / "authpi.db")
        try:
            return int(conn.execute(sql.format(p="?", p2="?"), (server.account_id, event_type)).fetchone()[0])
        finally:
            conn.close()
    import asyncpg

    assert server.database_url
    pg = await asyncpg.connect(server.database_url)
    try:
        return int(await pg.fetchval(sql.format(p="$1", p2="$2"), server.account_id, event_type))
    finally:
        await pg.close()


async def seed_events(server: AuthPI, seeded: Seeded, count: int = EVENTS) -> EventLog:
    """``count`` events for the bench account, bulk-inserted with SQL (through the API they would
    take hours: each is the by-product of a write or a sign-in), cloned from the real events the
    Core API seeding and the login above emitted. The deep cursors are computed with SQL, then
    checked through the API (the page they open must come back full, after the right event)."""
    await _refresh_once(seeded)  # so that session.token-refreshed has a real template too
    templates = await _event_templates(server)
    if not templates:
        raise RuntimeError("the seeding emitted no events to clone")
    started = time.monotonic()
    issuers = [seeded.issuer_id, seeded.write_issuer_id]
    from authpi import ids

    issuers += [ids.issuer_id() for _ in range(6)]  # the account's other issuers
    factory = _EventFactory(templates, issuers, users=max(100, count // 50))
    log = EventLog(count=count, templates=sorted({str(t["type"]) for t in templates}))

    def chunks() -> Iterator[list[dict[str, object]]]:  # made as they are written: 1M rows are ~2 GB
        made = factory.rows(count)
        for start in range(0, count, 20_000):
            chunk = [next(made) for _ in range(min(20_000, count - start))]
            for e in chunk:
                log.types[str(e["type"])] = log.types.get(str(e["type"]), 0) + 1
            yield chunk

    if server.backend == "sqlite":
        await asyncio.to_thread(_sqlite_events, server.data_dir / "authpi.db", chunks())
    else:
        assert server.database_url
        await _pg_events(server.database_url, chunks())
    log.seconds = time.monotonic() - started
    total = count + len(templates)
    log.deep_page = min(EVENTS_DEEP_PAGE, total // PAGE_SIZE)
    log.deep_cursor = await _event_cursor(server, log.deep_page, None)
    filtered = await _count_events(server, EVENTS_FILTER_TYPE)
    log.filtered_page = max(2, min(EVENTS_DEEP_PAGE, filtered // PAGE_SIZE))
    log.filtered_cursor = await _event_cursor(server, log.filtered_page, EVENTS_FILTER_TYPE)
    base = f"{server.url}/v1/accounts/{server.account_id}/events"
    auth = {"Authorization": basic_header(server.key_id, server.key_secret)}
    async with httpx.AsyncClient(timeout=60, headers=auth) as http:
        for cursor, kind, page in (
            (log.deep_cursor, None, log.deep_page),
            (log.filtered_cursor, EVENTS_FILTER_TYPE, log.filtered_page),
        ):
            params = {"limit": PAGE_SIZE, "cursor": cursor, **({"event_types": kind} if kind else {})}
            r = await http.get(base, params=params)
            r.raise_for_status()
            data = r.json()["data"]
            if len(data) != PAGE_SIZE or not all(e["id"] < cursor for e in data):
                raise RuntimeError(f"events page {page} ({kind or 'all'}) has {len(data)} events")
            if kind and any(e["type"] != kind for e in data):
                raise RuntimeError("the filtered page holds other types")
    return log


# --- webhooks (the cost of fan-out) ----------------------------------------------------------------

WEBHOOK_EVENTS = ["user.created", "session.token-refreshed"]  # what core_post_user and refresh emit


async def seed_webhooks(server: AuthPI, count: int, url: str) -> None:
    """``count`` active webhooks subscribed to the events the write and refresh scenarios emit, so
    each of their requests adds ``count`` delivery rows (and ``count`` deliveries to ``url``)."""
    core = Core(server)
    try:
        for i in range(count):
            await core.post(
                "/webhooks",
                {"name": f"bench-{i}", "url": url, "auth": {"type": "signature"}, "events": WEBHOOK_EVENTS},
            )
    finally:
        await core.aclose()
