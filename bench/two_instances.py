"""One instance against two on the same machine, one PostgreSQL and one Redis; writes
``bench/results/two-instances.md``.

Run from the repository: ``PYTHONPATH=src .venv/bin/python -m bench.two_instances``. Measures
throughput (``client_credentials`` ES256, a Core API GET) of one instance with two workers, then of
two such instances with wrk split over both; the delay until a client disabled through instance A
is refused by instance B (50 writes); and, with rate limits on, that a token limit is counted once
for the deployment (exactly the limit is accepted however the requests are spread).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from bench.procs import AuthPI, _stop, _wait_http, free_port, pg_database
from bench.seed import M2M_SCOPE, Seeded, basic_header, seed_core
from bench.wrk import WrkResult, run_wrk

RESULTS = Path(__file__).resolve().parent / "results" / "two-instances.md"
REDIS_URL = "redis://127.0.0.1:6379/0"
WRITES = 50
TOKEN_LIMIT = 200


@contextmanager
def deployment(count: int, env: dict[str, str], workers: int = 2) -> Iterator[list[AuthPI]]:
    """``count`` instances of one bootstrapped deployment (``env`` holds its database and data dir)."""
    with ExitStack() as stack:
        servers = []
        for index in range(count):
            port = free_port()
            log = Path(env["AUTHPI_DATA_DIR"]).parent / f"server-{index}-{port}.log"
            with open(log, "wb") as out:
                command = ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
                proc = subprocess.Popen(
                    [sys.executable, "-m", "authpi", *command], env=env, stdout=out, stderr=subprocess.STDOUT
                )
            stack.callback(_stop, proc)
            url = f"http://127.0.0.1:{port}"
            _wait_http(f"{url}/healthz", proc, log)
            creds = json.loads(env["BENCH_CREDS"])
            servers.append(
                AuthPI(
                    name=f"authpi-{index}",
                    url=url,
                    proc=proc,
                    log=log,
                    account_id=creds["account_id"],
                    key_id=creds["key_id"],
                    key_secret=creds["key_secret"],
                    backend="postgres",
                )
            )
        time.sleep(2.0)  # every worker up
        yield servers


def split_wrk(
    servers: list[AuthPI], path: str, script: str, env: dict[str, str], seconds: float
) -> WrkResult:
    """32 connections in all, split evenly over the instances; requests and latencies combined."""
    connections = 32 // len(servers)
    with ThreadPoolExecutor(len(servers)) as pool:
        runs = list(
            pool.map(
                lambda s: run_wrk(
                    s.url + path, script, seconds=seconds, connections=connections, threads=1, env=env
                ),
                servers,
            )
        )
    return WrkResult(
        requests=sum(r.requests for r in runs),
        seconds=max(r.seconds for r in runs),
        p50_ms=max(r.p50_ms for r in runs),
        p90_ms=max(r.p90_ms for r in runs),
        p99_ms=max(r.p99_ms for r in runs),
        max_ms=max(r.max_ms for r in runs),
        errors=sum(r.errors for r in runs),
        exhausted=0,
        raw={},
    )


def scenarios(seeded: Seeded, account_id: str, auth: str) -> list[tuple[str, str, str, dict[str, str]]]:
    m2m = seeded.m2m["ES256"]
    return [
        (
            "client_credentials ES256",
            f"/{seeded.issuer_id}/token",
            "token_cc.lua",
            {
                "BENCH_CLIENT_ID": m2m.client_id,
                "BENCH_CLIENT_SECRET": m2m.client_secret,
                "BENCH_SCOPE": M2M_SCOPE,
            },
        ),
        (
            "Core API GET of an issuer",
            f"/v1/accounts/{account_id}/issuers/{seeded.issuer_id}",
            "get.lua",
            {"BENCH_AUTH": auth},
        ),
    ]


async def invalidation_delays(a: AuthPI, b: AuthPI, seeded: Seeded, writes: int) -> list[float]:
    """Disable (then enable) a client through A's Core API ``writes`` times; each time, how long
    until B answers accordingly (B polled every 5 ms; its row cache would keep the old row 30 s)."""
    core = f"{a.url}/v1/accounts/{a.account_id}/issuers/{seeded.issuer_id}/clients"
    headers = {"Authorization": basic_header(a.key_id, a.key_secret)}
    async with httpx.AsyncClient(timeout=30) as http:
        created = (await http.post(core, json={"name": "flip", "type": "m2m"}, headers=headers)).json()[
            "data"
        ]
        auth = (created["id"], created["secret"])
        token = f"{b.url}/{seeded.issuer_id}/token"
        delays = []
        for index in range(writes):
            status = "disabled" if index % 2 == 0 else "active"
            expect_ok = status == "active"
            for _ in range(3):  # B has the current row cached
                await http.post(token, data={"grant_type": "client_credentials"}, auth=auth)
            current = (await http.get(f"{core}/{created['id']}", headers=headers)).headers.get("etag")
            patch = await http.patch(
                f"{core}/{created['id']}",
                json={"status": status},
                headers={**headers, **({"If-Match": current} if current else {})},
            )
            assert patch.status_code == 200, patch.text
            written = time.monotonic()
            while True:
                answer = await http.post(token, data={"grant_type": "client_credentials"}, auth=auth)
                if (answer.status_code == 200) == expect_ok:
                    delays.append(time.monotonic() - written)
                    break
                if time.monotonic() - written > 40:
                    raise RuntimeError("B never saw the change")
                await asyncio.sleep(0.005)
        return delays


def counted_once(servers: list[AuthPI], seeded: Seeded, requests: int) -> int:
    """Token requests alternating over the instances: how many were accepted."""
    m2m = seeded.m2m["ES256"]
    accepted = 0
    with httpx.Client(timeout=30, auth=(m2m.client_id, m2m.client_secret)) as http:
        for index in range(requests):
            server = servers[index % len(servers)]
            answer = http.post(
                f"{server.url}/{seeded.issuer_id}/token", data={"grant_type": "client_credentials"}
            )
            accepted += answer.status_code == 200
    return accepted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--writes", type=int, default=WRITES)
    args = parser.parse_args()
    rows: list[str] = []
    loads: list[str] = []
    with tempfile.TemporaryDirectory(prefix="authpi-two-") as tmp, pg_database() as db_url:
        env = {name: v for name, v in os.environ.items() if not name.startswith("AUTHPI_")}
        env.update(
            {
                "AUTHPI_DATA_DIR": str(Path(tmp) / "data"),
                "AUTHPI_DATABASE_URL": db_url,
                "AUTHPI_RATE_LIMITS_ENABLED": "false",
                "AUTHPI_LOG_LEVEL": "warning",
                "AUTHPI_REDIS_URL": REDIS_URL,
                "AUTHPI_REDIS_PREFIX": "authpi-bench-" + secrets.token_hex(4),
                "AUTHPI_CONFIG_CACHE_SECONDS": "30",
            }
        )
        boot = subprocess.run(
            [sys.executable, "-m", "authpi", "bootstrap"], env=env, capture_output=True, text=True
        )
        assert boot.returncode == 0, boot.stderr
        env["BENCH_CREDS"] = boot.stdout
        measured: dict[str, dict[int, WrkResult]] = {}
        seeded: Seeded | None = None
        for count in (1, 2):
            with deployment(count, env) as servers:
                if seeded is None:  # each instance publishes its own address: the scenarios need no `iss`
                    seeded = asyncio.run(seed_core(servers[0]))
                auth = basic_header(servers[0].key_id, servers[0].key_secret)
                for name, path, script, wrk_env in scenarios(seeded, servers[0].account_id, auth):
                    loads.append(f"{name}, {count} instance(s): load average before {os.getloadavg()[0]:.2f}")
                    measured.setdefault(name, {})[count] = split_wrk(
                        servers, path, script, wrk_env, args.seconds
                    )
                if count == 2:
                    delays = asyncio.run(invalidation_delays(servers[0], servers[1], seeded, args.writes))
        env.update({"AUTHPI_RATE_LIMITS_ENABLED": "true", "AUTHPI_RATE_LIMIT_TOKEN": f"{TOKEN_LIMIT}/hour"})
        with deployment(2, env, workers=1) as servers:
            assert seeded is not None
            accepted = counted_once(servers, seeded, TOKEN_LIMIT + 100)
    load_after = os.getloadavg()
    for name, by_count in measured.items():
        one, two = by_count[1], by_count[2]
        rows.append(
            f"| {name} | {one.rps:,.0f} (p99 {one.p99_ms:.1f} ms, {one.errors} errors) "
            f"| {two.rps:,.0f} (p99 {two.p99_ms:.1f} ms, {two.errors} errors) | {two.rps / one.rps:.2f}× |"
        )
    ordered = sorted(delays)
    text = "\n".join(
        [
            "# Two instances on one machine (PostgreSQL + Redis)",
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.two_instances` on {os.cpu_count()} cores "
            f"(shared with other work: see the load averages). Every instance has 2 workers; wrk sends 32 "
            f"connections for {args.seconds:.0f} s, split evenly over the instances. Rate limits off as in "
            "`bench/results/latest.md`; caches of rows kept 30 s, so only the cross-instance eviction explains "
            "a change seen sooner.",
            "",
            "| scenario | 1 instance | 2 instances | ratio |",
            "|---|---|---|---|",
            *rows,
            "",
            "Two instances share the same two cores, so flat is expected: what matters is that nothing breaks "
            "(errors above) and nothing is counted twice (below).",
            "",
            f"**Invalidation delay** (client disabled/enabled through A's Core API, until B answers "
            f"accordingly; {len(delays)} writes, Redis pub/sub): p50 {statistics.median(ordered) * 1000:.0f} ms, "
            f"p90 {ordered[int(len(ordered) * 0.9) - 1] * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms.",
            "",
            f"**Counted once**: token limit {TOKEN_LIMIT}/hour, {TOKEN_LIMIT + 100} `client_credentials` requests "
            f"alternating over two instances: {accepted} accepted (exactly {TOKEN_LIMIT} expected; per-instance "
            f"counting would accept {min(2 * TOKEN_LIMIT, TOKEN_LIMIT + 100)}).",
            "",
            "Load average (1 min): " + "; ".join(loads) + f"; after: {load_after[0]:.2f}.",
            "",
        ]
    )
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
