"""Several ``authpi serve`` instances on one database (and one Redis) behave as one server.

Two real instances on different ports share a PostgreSQL database and, for the first group of
tests, the local Redis (a key prefix of their own, so parallel runs never meet). A sign-in spreads
over both, a client disabled through one is refused by the other within a second, and the password
lockout and the rate limits count attempts made on either. The caches are made to live far longer
than a second (``AUTHPI_CONFIG_CACHE_SECONDS``, ``AUTHPI_KEY_CACHE_SECONDS``), so only the
cross-instance eviction (``storage.invalidation``) can explain a change seen within a second. The
same holds without Redis (PostgreSQL LISTEN/NOTIFY) and for the workers of one SQLite instance
(the polled ``cache_invalidations`` table).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from authpi_admin import AuthPIAdmin

from tests.harness import RunningServer, database, free_port
from tests.oidc.helpers import (
    PASSWORD,
    Client,
    Realm,
    basic,
    callback_params,
    describe,
    error_text,
    form,
    is_page,
    new_realm,
    unverified_claims,
)

pytestmark = pytest.mark.anyio

REDIS_URL = "redis://127.0.0.1:6379/0"
WRONG = "not the password at all"
VISIBLE_WITHIN_S = 1.0
LONG_CACHES = {"AUTHPI_CONFIG_CACHE_SECONDS": "30", "AUTHPI_KEY_CACHE_SECONDS": "600"}
LOGIN_ACCOUNT_LIMIT = 8


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def _need(backend: str, redis: bool) -> None:
    if backend == "postgres" and not os.environ.get("AUTHPI_TEST_DATABASE_URL"):
        pytest.skip("needs PostgreSQL (AUTHPI_TEST_DATABASE_URL)")
    if redis and not _redis_up():
        pytest.skip("needs the local Redis on 127.0.0.1:6379")


def _start(env: dict[str, str], port: int, workers: int, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        command = ["serve", "--port", str(port), "--workers", str(workers)]
        return subprocess.Popen(
            [sys.executable, "-m", "authpi", *command], env=env, stdout=log, stderr=subprocess.STDOUT
        )


def _wait_serving(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("server did not start:\n" + log_path.read_text())
        time.sleep(0.1)


@contextmanager
def instances(
    backend: str, count: int, extra_env: dict[str, str], workers: int = 1
) -> Iterator[list[RunningServer]]:
    """``count`` instances of one deployment: one database, one master key, one public URL (the
    first instance's, as behind a proxy), each listening on a port of its own."""
    with tempfile.TemporaryDirectory(prefix="authpi-pair-") as tmp, database(backend, Path(tmp)) as db_url:
        ports = [free_port() for _ in range(count)]
        env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHPI_")}
        env.update(
            {
                "AUTHPI_DATA_DIR": str(Path(tmp) / "data"),
                "AUTHPI_PUBLIC_URL": f"http://127.0.0.1:{ports[0]}",
                "AUTHPI_LOG_LEVEL": "info",
                **extra_env,
            }
        )
        if db_url:
            env["AUTHPI_DATABASE_URL"] = db_url
        boot = subprocess.run(
            [sys.executable, "-m", "authpi", "bootstrap"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert boot.returncode == 0, boot.stderr
        creds = json.loads(boot.stdout)
        with ExitStack() as stack:
            running = []
            for index, port in enumerate(ports):
                log_path = Path(tmp) / f"server-{index}.log"
                proc = _start(env, port, workers, log_path)
                stack.callback(_stop, proc)
                url = f"http://127.0.0.1:{port}"
                _wait_serving(url, proc, log_path)
                key = (creds["key_id"], creds["key_secret"])
                running.append(
                    RunningServer(url, creds["account_id"], *key, backend, env, proc.pid, log_path)
                )
            yield running
            for server in running:
                assert server.tracebacks() == [], server.log_path.read_text() if server.log_path else ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def pair() -> Iterator[list[RunningServer]]:
    """Two instances on PostgreSQL and Redis, rate limits on (generous but for the per-account one)."""
    _need("postgres", redis=True)
    env = {
        **LONG_CACHES,
        "AUTHPI_REDIS_URL": REDIS_URL,
        "AUTHPI_REDIS_PREFIX": "authpi-test-" + secrets.token_hex(6),
        "AUTHPI_RATE_LIMITS_ENABLED": "true",
        "AUTHPI_RATE_LIMIT_CORE": "100000/minute",
        "AUTHPI_RATE_LIMIT_TOKEN": "100000/minute",
        "AUTHPI_RATE_LIMIT_AUTHORIZE": "100000/minute",
        "AUTHPI_RATE_LIMIT_LOGIN": "100000/minute",
        "AUTHPI_RATE_LIMIT_LOGIN_ACCOUNT": f"{LOGIN_ACCOUNT_LIMIT}/minute",
    }
    with instances("postgres", 2, env) as running:
        yield running


@pytest.fixture
async def realm(pair: list[RunningServer]) -> AsyncIterator[Realm]:
    async with AuthPIAdmin(api_key=pair[0].api_key, base_url=pair[0].url) as admin:
        yield await new_realm(admin, pair[0])


# --- a browser that talks to the instance it is told to ---------------------------------------------


def on(url: str, server: RunningServer) -> str:
    """``url`` (the public URL or another instance's) sent to ``server`` instead."""
    parts = urlsplit(url)
    return f"{server.url}{parts.path}" + (f"?{parts.query}" if parts.query else "")


class SpreadBrowser:
    """One browser (one cookie jar) whose every request goes to the instance the test names.
    Cookies are not port-bound, so the instances share the browser's session like one server."""

    def __init__(self) -> None:
        self.http = httpx.AsyncClient(timeout=30, follow_redirects=False)

    async def close(self) -> None:
        await self.http.aclose()

    async def follow(self, response: httpx.Response, server: RunningServer) -> httpx.Response:
        ours = {urlsplit(server.url).netloc, urlsplit(server.env["AUTHPI_PUBLIC_URL"]).netloc}
        for _ in range(10):
            if not response.is_redirect:
                return response
            target = urljoin(str(response.url), response.headers["location"])
            if urlsplit(target).netloc not in ours:
                return response  # off to the client's callback
            response = await self.http.get(on(target, server))
        raise AssertionError("redirect loop")

    async def open(self, url: str, server: RunningServer) -> httpx.Response:
        return await self.follow(await self.http.get(on(url, server)), server)

    async def submit(
        self, page: httpx.Response, fields: dict[str, str], server: RunningServer, suffix: str = ""
    ) -> httpx.Response:
        chosen = form(page, suffix)
        target = on(urljoin(str(page.url), chosen.action), server)
        return await self.follow(await self.http.post(target, data={**chosen.hidden, **fields}), server)


async def password_attempt(
    realm: Realm, client: Client, username: str, password: str, first: RunningServer, then: RunningServer
) -> httpx.Response:
    """Open the sign-in on ``first``; post the identifier and the password to ``then``."""
    browser = SpreadBrowser()
    try:
        login = await browser.open(realm.request(client.id).url, first)
        assert is_page(login, "login"), describe(login)
        page = await browser.submit(login, {"username": username}, then)
        assert page.status_code == 200, describe(page)
        return await browser.submit(page, {"password": password}, then, "/login/password")
    finally:
        await browser.close()


def locked(page: httpx.Response) -> bool:
    return "Too many failed attempts" in (error_text(page) or "")


async def token_on(server: RunningServer, realm: Realm, client: Client, **fields: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30, auth=basic(client)) as http:
        return await http.post(on(f"{realm.url}/token", server), data=fields)


async def seconds_until(check_refused: object, *, limit: float = 10.0, settle: int = 1) -> float:
    """Seconds from now until ``check_refused()`` holds ``settle`` times in a row."""
    started = time.monotonic()
    first_refusal: float | None = None
    streak = 0
    while time.monotonic() - started < limit:
        refused = await check_refused()  # type: ignore[operator]
        now = time.monotonic()
        if refused:
            first_refusal = now if streak == 0 else first_refusal
            streak += 1
            if streak >= settle:
                assert first_refusal is not None
                return first_refusal - started
        else:
            streak = 0
        await asyncio.sleep(0.01)
    raise AssertionError(f"still accepted after {limit} s")


# --- one flow over both instances --------------------------------------------------------------------


async def test_a_sign_in_spread_over_both_instances_works(realm: Realm, pair: list[RunningServer]) -> None:
    a, b = pair
    client = await realm.client()
    await realm.user("spread@example.com")
    auth = realm.request(client.id)
    browser = SpreadBrowser()
    try:
        login = await browser.open(auth.url, a)  # authorize on A
        assert is_page(login, "login"), describe(login)
        page = await browser.submit(login, {"username": "spread@example.com"}, b)  # login on B
        done = await browser.submit(page, {"password": PASSWORD}, b, "/login/password")
    finally:
        await browser.close()
    params = callback_params(done)
    assert params.get("state") == auth.state, describe(done)
    assert auth.verifier is not None
    tokens = await token_on(  # token on A
        a,
        realm,
        client,
        grant_type="authorization_code",
        code=params["code"],
        redirect_uri=auth.redirect_uri,
        code_verifier=auth.verifier,
    )
    assert tokens.status_code == 200, describe(tokens)
    refreshed = await token_on(  # refresh on B
        b, realm, client, grant_type="refresh_token", refresh_token=tokens.json()["refresh_token"]
    )
    assert refreshed.status_code == 200, describe(refreshed)
    assert unverified_claims(refreshed.json()["id_token"])["iss"] == realm.url
    # The rotated-out refresh token is spent on both instances (reuse detection is in the database).
    spent = tokens.json()["refresh_token"]
    again = await token_on(a, realm, client, grant_type="refresh_token", refresh_token=spent)
    assert again.status_code == 400, describe(again)


# --- a change through one instance takes effect on the other within a second --------------------------


async def disabled_client_refused_within(realm: Realm, writer: RunningServer, reader: RunningServer) -> float:
    client = await realm.client("m2m")
    for _ in range(5):  # the reader has the client cached (for 30 s) before the change
        accepted = await token_on(reader, realm, client, grant_type="client_credentials")
        assert accepted.status_code == 200, describe(accepted)
    async with AuthPIAdmin(api_key=writer.api_key, base_url=writer.url) as admin:
        await admin.issuer(realm.id).clients.update(client.id, {"status": "disabled"})

    async def refused() -> bool:
        return (await token_on(reader, realm, client, grant_type="client_credentials")).status_code != 200

    return await seconds_until(refused, settle=10)


async def test_a_client_disabled_on_one_instance_is_refused_by_the_other_within_a_second(
    realm: Realm, pair: list[RunningServer]
) -> None:
    delay = await disabled_client_refused_within(realm, pair[0], pair[1])
    print(f"client disabled on A, refused by B after {delay * 1000:.0f} ms (Redis)")
    assert delay < VISIBLE_WITHIN_S


async def test_a_key_rotation_reaches_the_other_instance_within_a_second(
    realm: Realm, pair: list[RunningServer]
) -> None:
    a, b = pair
    client = await realm.client("m2m")

    async def kid_on(server: RunningServer) -> str:
        response = await token_on(server, realm, client, grant_type="client_credentials")
        assert response.status_code == 200, describe(response)
        header = response.json()["access_token"].split(".")[0]
        return str(json.loads(base64.urlsafe_b64decode(header + "=="))["kid"])

    before = await kid_on(b)
    rotated = await asyncio.to_thread(a.cli, "keys", "rotate")  # a command run beside the instances
    assert rotated.returncode == 0, rotated.stderr

    async def new_kid() -> bool:
        return await kid_on(b) != before

    assert await seconds_until(new_kid, settle=5) < VISIBLE_WITHIN_S


# --- lockouts and rate limits count on both --------------------------------------------------------------


async def test_the_password_lockout_counts_failures_made_on_both_instances(
    realm: Realm, pair: list[RunningServer]
) -> None:
    a, b = pair
    client = await realm.client()
    await realm.user("locked@example.com")
    for attempt in range(5):  # the issuer locks after 5 failures: A, B, A, B, A
        server = pair[attempt % 2]
        page = await password_attempt(realm, client, "locked@example.com", WRONG, server, server)
        assert page.status_code == 400 and not locked(page), describe(page)
    for server in (a, b):
        refused = await password_attempt(realm, client, "locked@example.com", PASSWORD, server, server)
        assert refused.status_code == 400 and locked(refused), describe(refused)


async def test_the_per_account_rate_limit_counts_attempts_made_on_both_instances(
    realm: Realm, pair: list[RunningServer]
) -> None:
    await realm.api.update({"settings": {"security": {"lockout": {"max_failures": 50}}}})
    client = await realm.client()
    await realm.user("limited@example.com")
    answers = []
    for attempt in range(LOGIN_ACCOUNT_LIMIT + 1):
        server = pair[attempt % 2]
        page = await password_attempt(realm, client, "limited@example.com", WRONG, server, server)
        answers.append(page.status_code)
    # Each instance saw about half the attempts: only a shared count reaches the limit.
    assert answers == [400] * LOGIN_ACCOUNT_LIMIT + [429], answers


# --- the transports without Redis ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_without_redis_a_change_reaches_every_instance_or_worker_within_a_second(backend: str) -> None:
    """PostgreSQL: two instances, LISTEN/NOTIFY. SQLite: one instance with two workers (whichever
    answers must refuse), the polled table."""
    _need(backend, redis=False)
    count, workers = (2, 1) if backend == "postgres" else (1, 2)
    env = {**LONG_CACHES, "AUTHPI_RATE_LIMITS_ENABLED": "false"}

    async def disable_and_measure(writer: RunningServer, reader: RunningServer) -> float:
        async with AuthPIAdmin(api_key=writer.api_key, base_url=writer.url) as admin:
            realm = await new_realm(admin, writer)
            return await disabled_client_refused_within(realm, writer, reader)

    with instances(backend, count, env, workers=workers) as running:
        delay = asyncio.run(disable_and_measure(running[0], running[-1]))
    print(f"{backend} without Redis: refused after {delay * 1000:.0f} ms")
    assert delay < VISIBLE_WITHIN_S
