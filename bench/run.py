"""The benchmark runner: ``python -m bench.run`` (``scripts/bench`` installs what it needs first).

For each backend (SQLite, then PostgreSQL) it starts ``authpi serve --workers 2``, seeds it through
the Core API (plus the 1,000,000-user directory, see bench/seed.py), and measures every scenario with
``wrk`` from a separate process on loopback: a warm-up run, then a measured run whose server CPU
time (user + system over the server's process tree) is read before and after. The login scenarios
use a Python driver (bench/login_load.py) in its own process. Then the peer (panva's oidc-provider,
2 cluster workers) is measured with the same wrk scripts. Everything started is stopped; the
results go to bench/results/latest.md and latest.png (and latest.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import machine, peer_flows, profile, report
from bench.procs import (
    AuthPI,
    Server,
    authpi_server,
    busy_cpu_seconds,
    free_port,
    own_children_cpu_seconds,
    peer_server,
    pg_admin_url,
    pg_available,
    postgres_cpu_seconds,
    wait_for_quiet,
)
from bench.seed import (
    LOGIN_PASSWORD,
    M2M_SCOPE,
    DEEP_PAGE,
    DIRECTORY_USERS,
    PAGE_SIZE,
    REDIRECT_URI,
    Seeded,
    basic_header,
    check_pool,
    minted_refresh_pool,
    refresh_pool,
    EventLog,
    seed_core,
    seed_directory,
    seed_events,
    seed_webhooks,
)
from bench.scale import SCALE_CLIENTS, SCALE_ISSUERS, SCALE_SPREAD, seed_scale
from bench.wrk import WrkResult, run_wrk

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


DIRECTORY_SCENARIOS = {"core_get_user", "core_list_p1", "core_list_p2000"}
EVENT_SCENARIOS = {"core_events_p1", "core_events_deep", "core_events_filtered_deep"}
SCALE_SCENARIO = "cc_es256_scale"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Row:
    scenario: str
    target: str  # sqlite | postgres | peer
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_per_1k: float | None
    requests: int
    errors: int
    db_cpu_per_1k: float | None = None
    worker_split: str = ""
    foreign_cpu_pct: float = 0.0  # CPU used by other work on the machine during the run, % of all cores
    server_errors: int = 0  # tracebacks the server logged during the measured run
    rss_mb: float = 0.0  # largest worker RSS right after the run
    note: str = ""


@dataclass
class Results:
    config: dict[str, object] = field(default_factory=dict)
    machine: dict[str, str] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    argon2_ms: float = 0.0
    rss_mb: dict[str, list[float]] = field(default_factory=dict)
    logins: dict[str, dict[str, object]] = field(default_factory=dict)
    spike: dict[str, dict[str, object]] = field(default_factory=dict)
    seeding: dict[str, dict[str, object]] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)  # "backend/scenario" -> summary text
    mixed: dict[str, list[dict[str, object]]] = field(default_factory=dict)  # backend -> one per load
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    seconds: float = 0.0

    def row(self, scenario: str, target: str) -> Row | None:
        return next((r for r in self.rows if r.scenario == scenario and r.target == target), None)


@dataclass
class Scenario:
    key: str
    url: str
    script: str
    env: dict[str, str]
    connections: int = 32


# --- measuring ------------------------------------------------------------------------------------


def _log_errors(server: Server) -> int:
    try:
        return server.log.read_text(errors="replace").count("Traceback (most recent call last)")
    except OSError:
        return 0


def _worker_cpu(server: Server) -> list[float]:
    out = []
    for proc in server.workers():
        try:
            times = proc.cpu_times()
            out.append(times.user + times.system)
        except Exception:
            out.append(0.0)
    return out


def measure(
    server: Server,
    sc: Scenario,
    target: str,
    args: argparse.Namespace,
    *,
    pg_database: str | None = None,
    env_warm: dict[str, str] | None = None,
) -> Row:
    warm_env = env_warm if env_warm is not None else sc.env
    if "BENCH_RUN" in warm_env and env_warm is None:
        warm_env = {**warm_env, "BENCH_RUN": warm_env["BENCH_RUN"] + "w"}  # fresh usernames
    if args.max_quiet_wait > 0:
        wait_for_quiet(args.max_quiet_wait)
    if args.warmup > 0:
        warm = run_wrk(sc.url, sc.script, seconds=args.warmup, connections=sc.connections, env=warm_env)
        if warm.errors:
            log(f"  warm-up of {sc.key} had {warm.errors} errors")
    cpu0, workers0, errors0 = server.cpu_seconds(), _worker_cpu(server), _log_errors(server)
    db0 = postgres_cpu_seconds(pg_database) if pg_database else 0.0
    busy0, kids0 = busy_cpu_seconds(), own_children_cpu_seconds()
    result = run_wrk(sc.url, sc.script, seconds=args.duration, connections=sc.connections, env=sc.env)
    cpu1, workers1 = server.cpu_seconds(), _worker_cpu(server)
    db1 = postgres_cpu_seconds(pg_database) if pg_database else 0.0
    busy1, kids1 = busy_cpu_seconds(), own_children_cpu_seconds()
    # Whatever else ran on the machine meanwhile (not the server, its database, or wrk).
    foreign = (busy1 - busy0) - (cpu1 - cpu0) - (db1 - db0) - (kids1 - kids0)
    capacity = max(result.seconds, 0.001) * (os.cpu_count() or 1)
    row = _row(sc, target, result, cpu1 - cpu0, db1 - db0 if pg_database else None, workers0, workers1)
    row.foreign_cpu_pct = max(0.0, 100 * foreign / capacity)
    row.server_errors = _log_errors(server) - errors0
    row.rss_mb = max(server.worker_rss_mb() or [0.0])
    if row.server_errors:
        row.note = (row.note + "; " if row.note else "") + f"{row.server_errors} tracebacks in the server log"
        log(f"    ! the server logged {row.server_errors} tracebacks during this run")
    if row.foreign_cpu_pct > 10:
        row.note = (row.note + "; " if row.note else "") + f"other work used {row.foreign_cpu_pct:.0f} % of the CPU"
        log(f"    ! other processes used {row.foreign_cpu_pct:.0f} % of the machine's CPU during this run")
    return row


def _row(
    sc: Scenario,
    target: str,
    result: WrkResult,
    cpu: float,
    db_cpu: float | None,
    workers0: list[float],
    workers1: list[float],
) -> Row:
    per_worker = [b - a for a, b in zip(workers0, workers1, strict=False)]
    total = sum(per_worker) or 1.0
    split = "/".join(f"{100 * w / total:.0f}" for w in per_worker)
    good = max(result.requests, 1)
    note = ""
    if result.errors:
        note = f"{result.errors} errors"
    if result.exhausted:
        note = (note + "; " if note else "") + f"pool exhausted ({result.exhausted})"
    row = Row(
        scenario=sc.key,
        target=target,
        connections=sc.connections,
        rps=result.rps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        cpu_per_1k=cpu / good * 1000,
        requests=result.requests,
        errors=result.errors,
        db_cpu_per_1k=(db_cpu / good * 1000) if db_cpu is not None else None,
        worker_split=split,
        note=note,
    )
    log(
        f"  {target:8s} {sc.key:18s} {row.rps:9.1f} req/s  p50 {row.p50_ms:7.1f} ms  p99 {row.p99_ms:7.1f} ms"
        f"  cpu {row.cpu_per_1k:6.2f} s/1k  split {split}  {note}"
    )
    return row


def _login_cmd(seeded: Seeded, concurrency: int, warmup: float, duration: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.login_load",
        "--issuer-url",
        seeded.web.issuer_url,
        "--client-id",
        seeded.web.client_id,
        "--client-secret",
        seeded.web.client_secret,
        "--redirect-uri",
        seeded.web.redirect_uri,
        "--users",
        ",".join(seeded.login_users),
        "--password",
        LOGIN_PASSWORD,
        "--concurrency",
        str(concurrency),
        "--warmup",
        str(warmup),
        "--duration",
        str(duration),
    ]


def _start_login_driver(seeded: Seeded, concurrency: int, warmup: float, duration: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _login_cmd(seeded, concurrency, warmup, duration),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish_login_driver(proc: subprocess.Popen[str], timeout: float) -> dict[str, object]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"login driver failed: {err[-2000:]}")
    result: dict[str, object] = json.loads(line.removeprefix("BENCH_JSON "))
    return result


def measure_logins(server: AuthPI, seeded: Seeded, args: argparse.Namespace, results: Results) -> None:
    """Logins per second at saturation (``--login-concurrency`` browsers), vs the argon2 limit."""
    if args.max_quiet_wait > 0:
        wait_for_quiet(args.max_quiet_wait)
    # The limit is measured again right here, in the same conditions as the logins that follow.
    argon2_ms = machine.argon2_verify_cost(11) * 1000
    proc = _start_login_driver(seeded, args.login_concurrency, args.warmup, args.duration)
    time.sleep(args.warmup)
    cpu0 = server.cpu_seconds()
    login = _finish_login_driver(proc, args.warmup + args.duration + 180)
    cpu1 = server.cpu_seconds()
    logins = max(int(login["logins"]), 1)  # type: ignore[call-overload]
    login["cpu_per_login_ms"] = (cpu1 - cpu0) / logins * 1000
    login["argon2_ms"] = argon2_ms
    login["limit_per_s"] = (os.cpu_count() or 1) * 1000 / argon2_ms
    results.logins[server.backend] = login
    log(
        f"  {server.backend:8s} logins            {login['logins_per_s']:9.1f} /s  p50 {login['p50_ms']:.0f} ms"
        f"  p99 {login['p99_ms']:.0f} ms  failures {login['failures']}  cpu/login {login['cpu_per_login_ms']:.1f} ms"
        f"  (argon2 {argon2_ms:.1f} ms -> limit {login['limit_per_s']:.1f}/s)"
    )


def _mixed_cmd(server: AuthPI, seeded: Seeded, connections: int, args: argparse.Namespace) -> list[str]:
    options = {
        "server-url": server.url,
        "account-id": server.account_id,
        "key-id": server.key_id,
        "key-secret": server.key_secret,
        "write-issuer-id": seeded.write_issuer_id,
        "issuer-url": seeded.web.issuer_url,
        "client-id": seeded.web.client_id,
        "client-secret": seeded.web.client_secret,
        "redirect-uri": seeded.web.redirect_uri,
        "users": ",".join(seeded.login_users),
        "password": LOGIN_PASSWORD,
        "connections": str(connections),
        "warmup": str(args.warmup),
        "duration": str(args.duration),
    }
    return [sys.executable, "-m", "bench.mixed_load", *(x for k, v in options.items() for x in (f"--{k}", v))]


def measure_mixed(server: AuthPI, seeded: Seeded, args: argparse.Namespace, results: Results) -> None:
    """The write-heavy mix (bench/mixed_load.py) at each of ``--mixed-connections``: errors, p99,
    duplicates and lost updates (counters read back after the run)."""
    for connections in args.mixed_connections:
        if args.max_quiet_wait > 0:
            wait_for_quiet(args.max_quiet_wait)
        load0 = os.getloadavg()[0]
        errors0 = _log_errors(server)
        proc = subprocess.Popen(
            _mixed_cmd(server, seeded, connections, args), cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        result = _finish_login_driver(proc, args.warmup + args.duration + 300)
        result["server_errors"] = _log_errors(server) - errors0
        result["load_avg_1m_before"] = round(load0, 2)
        results.mixed.setdefault(server.backend, []).append(result)
        log(
            f"  {server.backend:8s} mixed {connections:3d} conns  {result['rps']:7.1f} req/s"
            f"  p50 {result['p50_ms']:.0f} ms  p99 {result['p99_ms']:.0f} ms  errors {result['errors']}"
            f"  duplicates {result['duplicates']}  lost updates {result['lost_updates']}"
            f"  (If-Match 200s {result['if_match_200s']})"
        )


def write_mixed(results: Results, out: Path) -> None:
    """bench/results/mixed.md and mixed.json: the write-heavy mix, per backend and load."""
    lines = [
        "# Write-heavy mixed load",
        "",
        "Creates with `Idempotency-Key` (each sent twice: the second must replay), If-Match counter",
        "updates (GET + PATCH, 4 shared counters), refreshes and full hosted logins, weights 4:4:2:1;",
        f"`authpi serve --workers {results.config.get('workers')}`, {results.config.get('duration_s')} s per load "
        f"after {results.config.get('warmup_s')} s warm-up. A 503 with Retry-After (load shedding) is retried",
        "after the delay it names, as clients should (`shed` counts those retries; their wait is in the latency).",
        "Errors: 5xx left after that and transport failures (a 412 on a lost If-Match race is the expected",
        "answer). Lost updates: If-Match 200s minus the counters' final values.",
        "",
        f"Machine: {results.machine.get('CPU', '')}; load average at start "
        f"{results.machine.get('Load average at start', '')} (the machine is shared).",
        "",
        "| Backend | Connections | req/s | p50 ms | p99 ms | shed | errors | server tracebacks | duplicates "
        "| If-Match 200s | lost updates | load avg before |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for backend, rows in results.mixed.items():
        for r in rows:
            lines.append(
                f"| {backend} | {r['connections']} | {r['rps']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} "
                f"| {r.get('shed_retries', 0)} | {r['errors']} | {r['server_errors']} | {r['duplicates']} | {r['if_match_200s']} "
                f"| {r['lost_updates']} | {r['load_avg_1m_before']} |"
            )
    lines += ["", "p99 per operation (ms):", ""]
    for backend, rows in results.mixed.items():
        for r in rows:
            ops = ", ".join(f"{op} {v['p99_ms']:.0f}" for op, v in r["by_op"].items())  # type: ignore[attr-defined]
            lines.append(f"* {backend} @ {r['connections']}: {ops}")
    (out / "mixed.md").write_text("\n".join(lines) + "\n")
    (out / "mixed.json").write_text(json.dumps(results.mixed, indent=2))


def measure_spike(
    server: AuthPI, seeded: Seeded, cc: Scenario, args: argparse.Namespace, results: Results
) -> None:
    """Token latency at a fixed, moderate offered load, alone and while logins saturate the
    argon2 thread pool: hashing runs in worker threads, so token requests must keep flowing."""
    conns = args.spike_connections
    delay_ms = max(1, round(conns * 1000 / args.spike_rate))
    paced = Scenario(cc.key, cc.url, cc.script, {**cc.env, "BENCH_DELAY_MS": str(delay_ms)}, conns)
    if args.max_quiet_wait > 0:
        wait_for_quiet(args.max_quiet_wait)
    quiet = run_wrk(paced.url, paced.script, seconds=args.duration, connections=conns, env=paced.env)
    proc = _start_login_driver(seeded, args.login_concurrency, 0, args.duration + 4)
    time.sleep(3)  # let the logins ramp up and fill the hash pool
    busy = run_wrk(paced.url, paced.script, seconds=args.duration, connections=conns, env=paced.env)
    login = _finish_login_driver(proc, args.duration + 180)
    results.spike[server.backend] = {
        "offered_rps": conns * 1000 / delay_ms,
        "connections": conns,
        "quiet": {"rps": quiet.rps, "p50_ms": quiet.p50_ms, "p99_ms": quiet.p99_ms, "errors": quiet.errors},
        "during_logins": {"rps": busy.rps, "p50_ms": busy.p50_ms, "p99_ms": busy.p99_ms, "errors": busy.errors},
        "logins_per_s": login["logins_per_s"],
        "login_p99_ms": login["p99_ms"],
    }
    log(
        f"  {server.backend:8s} spike: token p99 {quiet.p99_ms:.1f} ms alone -> {busy.p99_ms:.1f} ms while "
        f"{login['logins_per_s']:.1f} logins/s (offered {conns * 1000 / delay_ms:.0f} req/s)"
    )


# --- one backend ----------------------------------------------------------------------------------


def _scenarios(server: AuthPI, seeded: Seeded, event_log: EventLog | None = None) -> list[Scenario]:
    iu = seeded.issuer_url
    core = f"{server.url}/v1/accounts/{server.account_id}/issuers"
    api = {"BENCH_AUTH": basic_header(server.key_id, server.key_secret)}
    directory = f"{core}/{seeded.directory_issuer_id}/users"

    def m2m(alg: str) -> dict[str, str]:
        return {
            "BENCH_CLIENT_ID": seeded.m2m[alg].client_id,
            "BENCH_CLIENT_SECRET": seeded.m2m[alg].client_secret,
            "BENCH_SCOPE": M2M_SCOPE,
        }

    web = {"BENCH_CLIENT_ID": seeded.web.client_id, "BENCH_CLIENT_SECRET": seeded.web.client_secret}
    return [
        Scenario("discovery", f"{iu}/.well-known/openid-configuration", "get.lua", {}),
        Scenario("jwks", f"{iu}/jwks.json", "get.lua", {}),
        Scenario("cc_es256", f"{iu}/token", "token_cc.lua", m2m("ES256")),
        Scenario("cc_rs256", f"{iu}/token", "token_cc.lua", m2m("RS256")),
        Scenario("introspect", f"{iu}/introspect", "introspect.lua", {**web, "BENCH_TOKEN": seeded.access_token}),
        Scenario("userinfo", f"{iu}/userinfo", "get.lua", {"BENCH_AUTH": f"Bearer {seeded.access_token}"}),
        Scenario("core_get_user", f"{directory}/{seeded.directory_user_id}", "get.lua", api),
        Scenario("core_list_p1", f"{directory}?limit={PAGE_SIZE}", "get.lua", api),
        Scenario("core_list_p2000", f"{directory}?limit={PAGE_SIZE}&cursor={seeded.deep_cursor}", "get.lua", api),
        Scenario(
            "core_post_user",
            f"{core}/{seeded.write_issuer_id}/users",
            "post_user.lua",
            {**api, "BENCH_RUN": secrets.token_hex(3)},
        ),
        *(_event_scenarios(server, event_log, api) if event_log else []),
    ]


def _event_scenarios(server: AuthPI, log: EventLog, api: dict[str, str]) -> list[Scenario]:
    events = f"{server.url}/v1/accounts/{server.account_id}/events?limit={PAGE_SIZE}"
    return [
        Scenario("core_events_p1", events, "get.lua", api),
        Scenario("core_events_deep", f"{events}&cursor={log.deep_cursor}", "get.lua", api),
        Scenario(
            "core_events_filtered_deep",
            f"{events}&event_types={log.filtered_type}&cursor={log.filtered_cursor}",
            "get.lua",
            api,
        ),
    ]


def _write_pool(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def run_backend(backend: str, args: argparse.Namespace, results: Results, work: Path) -> None:
    log(f"== {backend}: starting authpi serve --workers {args.workers}")
    with authpi_server(backend, workers=args.workers, extra_env=args.server_env) as server:
        started = time.monotonic()
        seeded = asyncio.run(seed_core(server))
        if not args.only or args.only & DIRECTORY_SCENARIOS:
            asyncio.run(seed_directory(server, seeded, args.directory_users))
        event_log = None
        if not args.only or args.only & EVENT_SCENARIOS:
            event_log = asyncio.run(seed_events(server, seeded, args.events))
            log(
                f"  seeded: {event_log.count:,} events by SQL ({event_log.seconds:.1f} s); deep cursor = page "
                f"{event_log.deep_page:,}, {event_log.filtered_type} page {event_log.filtered_page:,}"
            )
            log(f"  event mix: {event_log.types}")
        if args.webhooks:
            asyncio.run(seed_webhooks(server, args.webhooks, args.webhook_url))
            log(f"  {args.webhooks} webhooks on user.created + session.token-refreshed -> {args.webhook_url}")
        results.seeding[backend] = {
            "src_fingerprint": machine.src_fingerprint(),
            "core_api_seconds": round(time.monotonic() - started - seeded.directory_seconds, 1),
            "directory_users": args.directory_users,
            "directory_sql_seconds": round(seeded.directory_seconds, 1),
        }
        if event_log:
            results.seeding[backend] |= {
                "events": event_log.count,
                "events_sql_seconds": round(event_log.seconds, 1),
                "events_deep_page": event_log.deep_page,
                "events_filtered": f"event_types={event_log.filtered_type}, page {event_log.filtered_page:,}",
                "event_types": event_log.types,
            }
        log(f"  seeded: core API + {args.directory_users} directory users by SQL ({seeded.directory_seconds:.1f} s)")
        pg = server.database_url.rsplit("/", 1)[1] if server.database_url else None
        scenarios = _scenarios(server, seeded, event_log)
        selected = [s for s in scenarios if not args.only or s.key in args.only]
        for sc in selected:
            results.rows.append(measure(server, sc, backend, args, pg_database=pg))

        cc = next(s for s in scenarios if s.key == "cc_es256")
        if not args.only or "refresh" in args.only:
            _refresh(server, seeded, args, results, work, pg)
        if not args.only or "login" in args.only:
            measure_logins(server, seeded, args, results)
        if not args.only or "spike" in args.only:
            measure_spike(server, seeded, cc, args, results)
        if not args.only or "mixed" in args.only:
            measure_mixed(server, seeded, args, results)
        if not args.only or SCALE_SCENARIO in args.only:
            # Last, so that every other row is measured on the small database.
            measure_scale(server, args, results, work, pg)
        if args.profile and backend in args.profile_backends:
            _profile(server, seeded, scenarios, args, results, work)
        results.rss_mb[backend] = [round(x, 1) for x in server.worker_rss_mb()]
        log(f"  worker RSS after the run: {results.rss_mb[backend]} MB")
        _keep_server_log(server, backend)


def _keep_server_log(server: Server, backend: str) -> None:
    """Errors the server logged during the run, summarised into results/server-<backend>.log."""
    try:
        text = server.log.read_text(errors="replace")
    except OSError:
        return
    path = RESULTS / f"server-{backend}.log"
    if "Traceback" not in text:
        path.unlink(missing_ok=True)
        return
    lines = text.splitlines()
    summary: dict[str, int] = {}
    for line in lines:
        if line and not line.startswith(" ") and ("Error" in line or "Exception" in line) and ":" in line:
            key = line.split(" (Background")[0][:200]
            summary[key] = summary.get(key, 0) + 1
    first = text.index("Traceback")
    head = "\n".join(f"{count:6d}  {key}" for key, count in sorted(summary.items(), key=lambda kv: -kv[1]))
    path.write_text(f"Error lines in the {backend} server log (count, line):\n{head}\n\nFirst traceback:\n"
                    + text[first : first + 6000] + "\n")


def measure_scale(server: AuthPI, args: argparse.Namespace, results: Results, work: Path, pg: str | None) -> None:
    """client_credentials ES256 with the bench's issuer among ``--scale-issuers`` issuers and
    ``--scale-clients`` clients, spread over ``--scale-spread`` clients of as many issuers."""
    scale = asyncio.run(seed_scale(server, work, args.scale_issuers, args.scale_clients, args.scale_spread))
    seeding: dict[str, object] = {
        "issuers": scale.issuers,
        "clients": scale.clients,
        "keys": scale.keys,
        "spread": scale.spread,
        "seconds": round(scale.seconds, 1),
    }
    results.seeding.setdefault(server.backend, {})["scale"] = seeding
    results.config["scale"] = {"issuers": scale.issuers, "clients": scale.clients, "spread": scale.spread}
    log(
        f"  seeded: {scale.issuers:,} issuers, {scale.clients:,} clients, {scale.keys:,} signing keys by SQL "
        f"({scale.seconds:.1f} s); requests over {scale.spread:,} clients"
    )
    sc = Scenario(
        SCALE_SCENARIO,
        server.url,
        "token_cc_many.lua",
        {"BENCH_CLIENTS": str(scale.clients_file), "BENCH_SCOPE": M2M_SCOPE},
    )
    # Fill the caches first: the ordinary warm-up would leave most of the working set cold (a worker
    # loading an issuer's keys for the first time imports its RSA key, ~75 ms, and each worker loads
    # each issuer). 5-second rounds until every client was asked at least eight times and the rate
    # stopped climbing (two rounds in a row within 10 % of the one before), bounded by --scale-fill-max.
    began, sent, previous, last, flat = time.monotonic(), 0, 0.0, 0.0, 0
    while time.monotonic() - began < args.scale_fill_max:
        fill_round = run_wrk(sc.url, sc.script, seconds=5, connections=sc.connections, env=sc.env)
        sent, last = sent + fill_round.requests, fill_round.rps
        flat = flat + 1 if last <= 1.1 * previous else 0
        if sent >= 8 * scale.spread and flat >= 2:
            break
        previous = last
    fill = time.monotonic() - began
    seeding["fill"] = {"requests": sent, "seconds": round(fill, 1), "last_round_rps": round(last, 1)}
    log(f"  cache fill: {sent:,} requests over {scale.spread:,} clients in {fill:.0f} s (last round {last:.0f} req/s)")
    # Measured over the key cache's freshness window (60 s by default), not 15 s: each worker
    # reloads an issuer's keys once per window, so a shorter run would count those reloads or miss
    # them depending on when it starts.
    row = measure(server, sc, server.backend, argparse.Namespace(**{**vars(args), "duration": args.scale_duration}),
                  pg_database=pg)
    if fill >= args.scale_fill_max:
        row.note = (row.note + "; " if row.note else "") + f"caches may not be full ({sent:,} requests in {fill:.0f} s)"
    results.rows.append(row)


def _refresh(
    server: AuthPI, seeded: Seeded, args: argparse.Namespace, results: Results, work: Path, pg: str | None
) -> None:
    """Refresh-token rotation on AuthPI: every request spends one token of a pre-generated pool."""

    def pool(count: int) -> list[str]:
        if args.refresh_pool_mode == "http":
            lines, _ = asyncio.run(refresh_pool(seeded, count))
        else:
            lines, _ = asyncio.run(minted_refresh_pool(server, seeded, count))
        return lines

    measure_refresh(
        server,
        server.backend,
        f"{seeded.issuer_url}/token",
        pool,
        lambda line: asyncio.run(check_pool(seeded, line)),
        args,
        results,
        work,
        pg,
    )


def measure_refresh(
    server: Server,
    target: str,
    token_url: str,
    pool: Callable[[int], list[str]],
    check: Callable[[str], None],
    args: argparse.Namespace,
    results: Results,
    work: Path,
    pg: str | None = None,
) -> None:
    """Refresh-token rotation (AuthPI or the peer): every request spends one token of a pool.

    The pool is sized from the warm-up: a first pool feeds the warm-up run, whose rate sets the
    size of the measured pool (twice what the measured run needs at that rate), so the pool does
    not run out however fast the server is. One token is spent over HTTP first (``check``)."""
    began = time.monotonic()
    warm_n = max(500, args.refresh_pool // 3)
    minted = 0
    for attempt in range(4):
        # A warm-up that ran out of tokens only gives a lower bound of the rate: again, with a pool
        # four times larger (a fast server spends 500 tokens in a fraction of a second).
        warm_lines = pool(warm_n + 1)
        minted += warm_n + 1
        if attempt == 0:
            check(warm_lines[0])
        warm_file, main_file = work / f"refresh-warm-{target}.txt", work / f"refresh-{target}.txt"
        _write_pool(warm_file, warm_lines[1:])
        warm = run_wrk(
            token_url,
            "refresh.lua",
            seconds=max(args.warmup, 2.0),
            connections=32,
            env={"BENCH_TOKENS": str(warm_file)},
        )
        rate = max(warm.requests - warm.exhausted, 1) / max(warm.seconds, 0.001)
        if not warm.exhausted:
            break
        warm_n *= 4
        rate *= 2  # still short after the last attempt: the real rate is higher than measured
    count = min(args.refresh_pool_max, max(args.refresh_pool, int(rate * args.duration * 2.0)))
    _write_pool(main_file, pool(count))
    results.seeding.setdefault(target, {})["refresh_pool"] = {
        "tokens": count + minted,
        "mode": args.refresh_pool_mode,
        "seconds": round(time.monotonic() - began, 1),
    }
    log(f"  refresh pool: {count} tokens (warm-up rate {rate:.0f}/s)")
    sc = Scenario("refresh", token_url, "refresh.lua", {"BENCH_TOKENS": str(main_file)})
    args_no_warm = argparse.Namespace(**{**vars(args), "warmup": 0})
    results.rows.append(measure(server, sc, target, args_no_warm, pg_database=pg))


def _profile(
    server: AuthPI,
    seeded: Seeded,
    scenarios: list[Scenario],
    args: argparse.Namespace,
    results: Results,
    work: Path,
) -> None:
    """py-spy on every worker while each hot path runs (not part of the measured numbers)."""
    if not profile.available():
        results.notes.append("py-spy not installed: no profiles")
        return
    out_dir = RESULTS / "profiles"
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob(f"{server.backend}-*"):
        old.unlink()  # a previous run's files for this backend
    raw_dir = work / "profiles"
    wanted = [s for s in scenarios if s.key in args.profile_scenarios]
    if "refresh" in args.profile_scenarios:
        lines, _ = asyncio.run(minted_refresh_pool(server, seeded, 4000))
        pool = work / f"refresh-profile-{server.backend}.txt"
        _write_pool(pool, lines)
        wanted.append(Scenario("refresh", f"{seeded.issuer_url}/token", "refresh.lua", {"BENCH_TOKENS": str(pool)}))
    log(f"  profiling {', '.join(s.key for s in wanted)} ({args.profile_seconds:.0f} s each)")
    if "login" in args.profile_scenarios:
        pids = [p.pid for p in server.workers()]
        name = f"{server.backend}-login"
        driver = _start_login_driver(seeded, args.login_concurrency, 0, args.profile_seconds + 3)
        time.sleep(2)
        profile.wait(profile.start(pids, raw_dir, name, args.profile_seconds))
        _finish_login_driver(driver, args.profile_seconds + 120)
        _write_profile(name, "login", server.backend, raw_dir, out_dir, args, results)
    for sc in wanted:
        pids = [p.pid for p in server.workers()]
        name = f"{server.backend}-{sc.key}"
        spies = profile.start(pids, raw_dir, name, args.profile_seconds)
        time.sleep(0.5)
        run_wrk(sc.url, sc.script, seconds=args.profile_seconds, connections=sc.connections, env=sc.env)
        profile.wait(spies)
        _write_profile(name, sc.key, server.backend, raw_dir, out_dir, args, results)


def _write_profile(
    name: str, key: str, backend: str, raw_dir: Path, out_dir: Path, args: argparse.Namespace, results: Results
) -> None:
    summary = profile.summarize(sorted(raw_dir.glob(f"{name}.*.txt")))
    text = summary.text(30)
    (out_dir / f"{name}.txt").write_text(
        f"py-spy, {args.profile_seconds:.0f} s of {key} on {backend}, event-loop thread of both workers\n\n{text}"
    )
    results.profiles[f"{backend}/{key}"] = text
    for raw in raw_dir.glob(f"{name}.*.txt"):
        shutil.copy(raw, out_dir / f"{name}.collapsed.{raw.name.split('.')[-2]}.txt")


# --- the peer -------------------------------------------------------------------------------------


def run_peer(args: argparse.Namespace, results: Results, work: Path) -> None:
    clients = [
        {"client_id": f"bench-m2m-{alg.lower()}", "client_secret": secrets.token_urlsafe(32), "alg": alg, "scope": M2M_SCOPE}
        for alg in ("ES256", "RS256")
    ]
    web = {"client_id": "bench-web", "client_secret": secrets.token_urlsafe(32), "redirect_uri": REDIRECT_URI}
    bench_secret = secrets.token_urlsafe(24)
    log("== peer: oidc-provider with 2 cluster workers")
    with peer_server(clients, workers=args.workers, web_client=web, bench_secret=bench_secret) as peer:
        by_alg = {c["alg"]: c for c in clients}
        web_client = peer_flows.PeerWebClient(peer.url, web["client_id"], web["client_secret"], web["redirect_uri"])

        def m2m(alg: str) -> dict[str, str]:
            return {
                "BENCH_CLIENT_ID": by_alg[alg]["client_id"],
                "BENCH_CLIENT_SECRET": by_alg[alg]["client_secret"],
                "BENCH_SCOPE": M2M_SCOPE,
            }

        scenarios = [
            Scenario("discovery", f"{peer.url}/.well-known/openid-configuration", "get.lua", {}),
            Scenario("jwks", f"{peer.url}/jwks", "get.lua", {}),
            Scenario("cc_es256", f"{peer.url}/token", "token_cc.lua", m2m("ES256")),
            Scenario("cc_rs256", f"{peer.url}/token", "token_cc.lua", m2m("RS256")),
        ]
        if not args.only or args.only & {"introspect", "userinfo"}:
            # One user access token from a real sign-in, as for AuthPI (opaque: see server.js).
            access = asyncio.run(peer_flows.sign_in(web_client)).access_token
            auth = {"BENCH_CLIENT_ID": web["client_id"], "BENCH_CLIENT_SECRET": web["client_secret"]}
            scenarios += [
                Scenario("introspect", f"{peer.url}/token/introspection", "introspect.lua", {**auth, "BENCH_TOKEN": access}),
                Scenario("userinfo", f"{peer.url}/me", "get.lua", {"BENCH_AUTH": f"Bearer {access}"}),
            ]
        for sc in scenarios:
            if args.only and sc.key not in args.only:
                continue
            results.rows.append(measure(peer, sc, "peer", args))
        if not args.only or "refresh" in args.only:

            def pool(count: int) -> list[str]:
                if args.refresh_pool_mode == "http":
                    lines, _ = asyncio.run(peer_flows.http_pool(web_client, count))
                else:
                    lines, _ = asyncio.run(peer_flows.minted_pool(web_client, bench_secret, count))
                return lines

            measure_refresh(
                peer,
                "peer",
                f"{peer.url}/token",
                pool,
                lambda line: asyncio.run(peer_flows.check_pool(web_client, line)),
                args,
                results,
                work,
            )
        results.rss_mb["peer"] = [round(x, 1) for x in peer.worker_rss_mb()]
        log(f"  peer worker RSS: {results.rss_mb['peer']} MB")
        peer_log = peer.log.read_text(errors="replace") if peer.log.exists() else ""
        if "Unsupported runtime" in peer_log:
            results.notes.append(
                "oidc-provider 9 printed 'Unsupported runtime' for this Node version (it asks for Node 22+); "
                "it served every request without errors."
            )


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per scenario")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    parser.add_argument("--no-peer", action="store_true", help="skip the oidc-provider comparison")
    parser.add_argument("--only", default="", help="comma-separated scenario keys to run (default: all)")
    parser.add_argument(
        "--mixed-connections",
        default="8,32,64",
        help="connection counts of the write-heavy mixed scenario (`--only mixed` runs it alone)",
    )
    parser.add_argument(
        "--users",
        "--directory-users",
        dest="directory_users",
        type=int,
        default=None,
        help="users bulk-inserted into the directory of core_get_user / core_list_p1 / core_list_p2000 "
        "(default 1,000,000; --quick: 20,000)",
    )
    parser.add_argument("--scale-issuers", type=int, default=None, help="issuers in the account for cc_es256_scale "
                        f"(default {SCALE_ISSUERS:,}; --quick: 2,000)")
    parser.add_argument("--scale-clients", type=int, default=None, help="clients in the account for cc_es256_scale "
                        f"(default {SCALE_CLIENTS:,}; --quick: 20,000)")
    parser.add_argument("--scale-spread", type=int, default=None, help="clients (of as many issuers) the "
                        f"cc_es256_scale requests rotate over (default {SCALE_SPREAD:,}; --quick: 200)")
    parser.add_argument("--scale-duration", type=float, default=None, help="measured seconds of cc_es256_scale "
                        "(default 60, the signing-key cache's freshness; --quick: --duration)")
    parser.add_argument("--scale-fill-max", type=float, default=300.0, help="longest cache fill before "
                        "cc_es256_scale's warm-up, seconds")
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="events bulk-inserted for the core_events_* scenarios"
    )
    parser.add_argument(
        "--webhooks",
        type=int,
        default=0,
        help="subscribe this many webhooks to user.created and session.token-refreshed before measuring "
        "(delivered to --webhook-url; start the server with AUTHPI_ALLOW_PRIVATE_NETWORKS=true for a local one)",
    )
    parser.add_argument("--webhook-url", default="", help="receiver of --webhooks (default: a local bench.receiver)")
    parser.add_argument("--refresh-pool", type=int, default=3000, help="smallest measured refresh pool")
    parser.add_argument("--refresh-pool-max", type=int, default=100_000, help="largest refresh pool")
    parser.add_argument("--refresh-pool-mode", choices=("mint", "http"), default="mint")
    parser.add_argument("--login-concurrency", type=int, default=12)
    parser.add_argument("--spike-connections", type=int, default=8)
    parser.add_argument("--spike-rate", type=float, default=100.0, help="offered token req/s in the spike test")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--profile-backends", default="sqlite")
    parser.add_argument(
        "--profile-scenarios",
        default="discovery,cc_es256,cc_rs256,introspect,userinfo,refresh,core_get_user,core_list_p2000,"
        "core_post_user,login",
    )
    parser.add_argument("--profile-seconds", type=float, default=6.0)
    parser.add_argument(
        "--max-quiet-wait",
        type=float,
        default=20.0,
        help="before each scenario, wait up to this many seconds for other work on the machine to stop",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for authpi serve, e.g. AUTHPI_KEY_CACHE_SECONDS=3600 (repeatable)",
    )
    parser.add_argument(
        "--without-events",
        action="store_true",
        help="serve with event emission replaced by a no-op (bench/without_events): the baseline that "
        "tells what emission costs",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s scenarios, 1 s warm-up, 20k users")
    parser.add_argument("--out", default=str(RESULTS), help="directory for latest.md / latest.png / latest.json")
    args = parser.parse_args(argv)
    if args.directory_users is None:
        args.directory_users = 20_000 if args.quick else DIRECTORY_USERS
    for name, full, quick in (
        ("scale_issuers", SCALE_ISSUERS, 2_000),
        ("scale_clients", SCALE_CLIENTS, 20_000),
        ("scale_spread", SCALE_SPREAD, 200),
    ):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.quick:
        args.duration, args.warmup, args.profile_seconds = 3.0, 1.0, 3.0
        args.events = 100_000
        args.refresh_pool = 1000
    if args.scale_duration is None:
        args.scale_duration = args.duration if args.quick else max(args.duration, 60.0)
    args.server_env = dict(item.split("=", 1) for item in args.server_env)
    if args.without_events:
        hook = str(ROOT / "bench" / "without_events")
        args.server_env["PYTHONPATH"] = os.pathsep.join(filter(None, [hook, os.environ.get("PYTHONPATH")]))
        args.server_env["BENCH_WITHOUT_EVENTS"] = "1"
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    args.mixed_connections = [int(s) for s in args.mixed_connections.split(",") if s.strip()]
    args.profile_backends = {s.strip() for s in args.profile_backends.split(",") if s.strip()}
    args.profile_scenarios = {s.strip() for s in args.profile_scenarios.split(",") if s.strip()}
    return args


def _received(url: str) -> int | None:
    import httpx

    try:
        return int(httpx.get(url.rsplit("/", 1)[0] + "/count", timeout=5).text)
    except (httpx.HTTPError, ValueError):
        return None


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every server and database the run started is cleaned up."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _stop_on_sigterm()
    if shutil.which("wrk") is None and args.only != {"mixed"}:
        print("wrk is not installed (scripts/bench installs it)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = Results()
    results.config = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "workers": args.workers,
        "wrk_threads": 2,
        "connections": 32,
        "directory_users": args.directory_users,
        "directory_deep_page": min(DEEP_PAGE, -(-args.directory_users // PAGE_SIZE)),
        "events": args.events,
        "webhooks": args.webhooks,
        "login_concurrency": args.login_concurrency,
        "server_env": args.server_env,
    }
    pg_version = None
    if "postgres" in args.backends:
        if pg_available():
            import asyncpg

            async def version() -> str:
                conn = await asyncpg.connect(pg_admin_url())
                try:
                    return str(await conn.fetchval("SHOW server_version"))
                finally:
                    await conn.close()

            pg_version = asyncio.run(version())
        else:
            results.notes.append(f"PostgreSQL not reachable at {pg_admin_url()}: PostgreSQL backend skipped")
            args.backends = [b for b in args.backends if b != "postgres"]
    results.machine = machine.details(pg_version)
    results.machine["Load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    log("measuring one argon2id verify (m=19456 KiB, t=2, p=1)")
    results.argon2_ms = machine.argon2_verify_cost() * 1000
    log(f"  argon2id verify: {results.argon2_ms:.1f} ms median -> limit {(os.cpu_count() or 1) * 1000 / results.argon2_ms:.1f} logins/s on {os.cpu_count()} cores")
    work = Path(tempfile.mkdtemp(prefix="authpi-bench-work-"))
    receiver = None
    if args.webhooks and not args.webhook_url:
        port = free_port()
        receiver = subprocess.Popen([sys.executable, "-m", "bench.receiver", "--port", str(port)], cwd=ROOT)
        args.webhook_url = f"http://127.0.0.1:{port}/hook"
        args.server_env.setdefault("AUTHPI_ALLOW_PRIVATE_NETWORKS", "true")
    try:
        for backend in args.backends:
            run_backend(backend, args, results, work)
        if not args.no_peer:
            if (ROOT / "bench" / "peer" / "node_modules" / "oidc-provider").exists():
                run_peer(args, results, work)
            else:
                results.notes.append("oidc-provider not installed (run scripts/bench): peer skipped")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if receiver is not None:
            results.config["webhook_deliveries_received"] = _received(args.webhook_url)
            log(f"the webhook receiver got {results.config['webhook_deliveries_received']} deliveries")
            receiver.terminate()
            receiver.wait(timeout=10)
        if machine.src_fingerprint() != results.machine.get("src/ fingerprint"):
            results.notes.append(
                "src/ changed while the run was in progress (fingerprint at the end: "
                f"{machine.src_fingerprint()}): servers started after the change measured the new code."
            )
        results.seconds = time.time() - results.started
        if results.mixed:
            write_mixed(results, out)
            log(f"wrote {out / 'mixed.md'}")
        if args.only != {"mixed"}:
            (out / "latest.json").write_text(json.dumps(asdict(results), indent=2, default=str))
            report.write(results, out)
            log(f"wrote {out / 'latest.md'} and {out / 'latest.png'} ({results.seconds / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
