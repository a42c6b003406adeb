"""bench/results/latest.md (tables, targets, machine) and latest.png (a chart drawn with Pillow)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.run import Results, Row

LABELS = {
    "discovery": "Discovery document",
    "jwks": "JWKS",
    "cc_es256": "client_credentials (ES256)",
    "cc_rs256": "client_credentials (RS256)",
    "cc_es256_scale": "client_credentials (ES256), many issuers / clients",
    "refresh": "refresh_token rotation",
    "introspect": "/introspect",
    "userinfo": "/userinfo",
    "core_get_user": "Core API GET user",
    "core_post_user": "Core API POST user",
    "core_list_p1": "GET users?limit=50, page 1",
    "core_list_p2000": "GET users?limit=50, page 2,000",
    "core_events_p1": "GET events?limit=50, page 1",
    "core_events_deep": "GET events?limit=50, page ~20,000",
    "core_events_filtered_deep": "GET events?event_types=…&limit=50, deep",
}
ORDER = list(LABELS)
TARGETS = ("sqlite", "postgres", "peer")
TARGET_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL", "peer": "oidc-provider"}
PEER_RATIO = ("discovery", "jwks", "cc_es256", "cc_rs256", "refresh", "introspect", "userinfo")


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    if value >= 100 and digits <= 1:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _cell(row: Row | None) -> list[str]:
    if row is None:
        return ["–", "–", "–", "–"]
    cpu = _fmt(row.cpu_per_1k, 2)
    if row.db_cpu_per_1k is not None:
        cpu += f" (+{_fmt(max(row.db_cpu_per_1k, 0.0), 2)} DB)"
    rps = _fmt(row.rps)
    if row.note:
        rps += " ⚠"
    return [rps, _fmt(row.p50_ms, 2 if row.p50_ms < 10 else 1), _fmt(row.p99_ms, 2 if row.p99_ms < 10 else 1), cpu]


def _ratio(results: Results, scenario: str, target: str) -> float | None:
    ours, peer = results.row(scenario, target), results.row(scenario, "peer")
    if ours is None or peer is None or not peer.rps:
        return None
    return ours.rps / peer.rps


def _main_table(results: Results) -> list[str]:
    present = [t for t in TARGETS if any(r.target == t for r in results.rows)]
    head = ["Scenario", "conns"]
    for t in present:
        name = TARGET_NAMES[t]
        head += [f"{name} req/s", "p50 ms", "p99 ms", "CPU s/1k req"]
    ratios = [t for t in ("sqlite", "postgres") if t in present and "peer" in present]
    head += [f"{TARGET_NAMES[t]}/peer" for t in ratios]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in ORDER:
        rows = {t: results.row(key, t) for t in present}
        if not any(rows.values()):
            continue
        conns = next(r.connections for r in rows.values() if r)
        cells = [LABELS[key], str(conns)]
        for t in present:
            cells += _cell(rows[t])
        for t in ratios:
            ratio = _ratio(results, key, t) if key in PEER_RATIO else None
            cells.append(f"**{ratio:.2f}×**" if ratio is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _status(ok: bool | None) -> str:
    return "–" if ok is None else ("✅ met" if ok else "❌ missed")


def _issue14(results: Results) -> list[str]:
    """The targets of issue 14, one row per path and backend: ours, the peer's (or the reference the
    target names), the ratio and whether it is met."""
    lines = [
        "| Path | Target | Backend | Ours | Peer / reference | Ratio | Status |",
        "|---|---|---|---|---|---|---|",
    ]
    scale = results.config.get("scale") if isinstance(results.config.get("scale"), dict) else {}
    users = int(results.config.get("directory_users", 0) or 0)  # type: ignore[call-overload]

    def rps(row: Row | None) -> str:
        return "not measured" if row is None else f"{_fmt(row.rps)} req/s, p99 {_fmt(row.p99_ms)} ms" + (
            " ⚠" if row.note else ""
        )

    def add(path: str, target: str, backend: str, ours: str, ref: str, ratio: str, ok: bool | None) -> None:
        lines.append(f"| {path} | {target} | {TARGET_NAMES.get(backend, backend)} | {ours} | {ref} | {ratio} | {_status(ok)} |")

    peer_rows = [
        ("cc_es256", "`client_credentials` ES256", "≥ 1.2× peer, p99 < 20 ms @32", 1.2, 20.0),
        ("cc_rs256", "`client_credentials` RS256", "≥ 1.0× peer", 1.0, None),
        ("refresh", "refresh rotation", "≥ 1.0× peer, p99 < 100 ms", 1.0, 100.0),
        ("userinfo", "userinfo", "≥ 1.0× peer", 1.0, None),
        ("introspect", "introspection", "≥ 1.0× peer", 1.0, None),
    ]
    for key, path, target, least, p99 in peer_rows:
        peer = results.row(key, "peer")
        for backend in ("sqlite", "postgres"):
            ours = results.row(key, backend)
            if ours is None and peer is None:
                continue
            ratio = _ratio(results, key, backend)
            ok = None if ratio is None or ours is None else ratio >= least and (p99 is None or ours.p99_ms < p99)
            cell = f"**{ratio:.2f}×**" if ratio is not None else "–"
            if ours and peer and ours.cpu_per_1k and peer.cpu_per_1k:
                # CPU per request is what a loaded machine distorts least.
                cell += f" (CPU/req {ours.cpu_per_1k / peer.cpu_per_1k:.1f}× the peer's)"
            add(path, target, backend, rps(ours), rps(peer), cell, ok)
    for backend in ("sqlite", "postgres"):
        row = results.row("core_get_user", backend)
        if row:
            add("Core API GET of a user", "≥ 3,000 req/s", backend, rps(row), "3,000 req/s", f"{row.rps / 3000:.2f}×",
                row.rps >= 3000)
    for backend in ("sqlite", "postgres"):
        login = results.logins.get(backend)
        if login:
            rate = float(login["logins_per_s"])
            limit = float(login.get("limit_per_s") or 0) or None
            share = rate / limit if limit else None
            add("password logins (whole flow)", "≥ 60 % of the argon2id limit (same run)", backend, f"{rate:.1f}/s",
                f"limit {limit:.1f}/s" if limit else "–", f"{100 * share:.0f} %" if share is not None else "–",
                None if share is None else share >= 0.6)
    for backend in ("sqlite", "postgres"):
        p1, deep = results.row("core_list_p1", backend), results.row("core_list_p2000", backend)
        if p1 and deep and p1.p50_ms:
            deep_page = int(results.config.get("directory_deep_page", 2000) or 2000)  # type: ignore[call-overload]
            add(f"users list, page {deep_page:,} of {users:,} users", "≤ 1.5× page 1 (p50)", backend,
                f"p50 {_fmt(deep.p50_ms)} ms", f"page 1: p50 {_fmt(p1.p50_ms)} ms", f"{deep.p50_ms / p1.p50_ms:.2f}×",
                deep.p50_ms <= 1.5 * p1.p50_ms)
    for backend in ("sqlite", "postgres"):
        single, many = results.row("cc_es256", backend), results.row("cc_es256_scale", backend)
        if many:
            label = (f"token endpoint, {int(scale.get('issuers', 0)):,} issuers / {int(scale.get('clients', 0)):,} "  # type: ignore[union-attr]
                     f"clients, {int(scale.get('spread', 0)):,} in use")  # type: ignore[union-attr]
            slowdown = single.rps / many.rps if single and many.rps else None
            cell = f"{slowdown:.2f}× slower" if slowdown is not None else "–"
            if single and single.cpu_per_1k and many.cpu_per_1k:
                cell += f" (CPU/req {many.cpu_per_1k / single.cpu_per_1k:.2f}×)"
            add(label, "≤ 1.1× the single-issuer figure (req/s ≥ 1/1.1 of it)", backend, rps(many),
                f"single issuer: {rps(single)}" if single else "single issuer not measured", cell,
                None if slowdown is None else slowdown <= 1.1)
    return lines


def _targets(results: Results) -> list[str]:
    """Earlier targets that still matter (issue 14's are in their own table)."""
    lines = ["| Target | Backend | Measured | Status |", "|---|---|---|---|"]

    def add(target: str, backend: str, measured: str, ok: bool | None) -> None:
        lines.append(f"| {target} | {TARGET_NAMES.get(backend, backend)} | {measured} | {_status(ok)} |")

    for backend in ("sqlite", "postgres"):
        p1 = results.row("core_events_p1", backend)
        events_deep = [results.row(k, backend) for k in ("core_events_deep", "core_events_filtered_deep")]
        if p1 and p1.p50_ms and all(events_deep):
            worst = max(r.p50_ms for r in events_deep if r)
            add(
                f"events list deep / filtered deep ≤ 1.5× page 1 (p50, {results.config.get('events', 0):,} events)",
                backend,
                " / ".join(f"{r.p50_ms:.1f}" for r in events_deep if r) + f" vs {p1.p50_ms:.1f} ms = "
                f"{worst / p1.p50_ms:.2f}×",
                worst <= 1.5 * p1.p50_ms,
            )
        for key in ("discovery", "jwks"):
            if results.row(key, backend) is None:
                continue
            ratio = _ratio(results, key, backend)
            add(
                f"{LABELS[key]} ≥ 1.0× peer",
                backend,
                f"{ratio:.2f}×" if ratio is not None else "no peer",
                None if ratio is None else ratio >= 1.0,
            )
        rss = results.rss_mb.get(backend)
        if rss:
            add("worker RSS after the run < 200 MB", backend, " / ".join(f"{x:.0f}" for x in rss) + " MB", max(rss) < 200)
    return lines


def _machine(results: Results) -> list[str]:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in results.machine.items()]
    return lines


def _logins(results: Results) -> list[str]:
    cores = os.cpu_count() or 1
    limit = cores * 1000 / results.argon2_ms if results.argon2_ms else 0
    lines = [
        f"One argon2id verify (m=19456 KiB, t=2, p=1, argon2-cffi, median, measured in the runner process "
        f"at the start of the run): **{results.argon2_ms:.1f} ms** → at most **{limit:.1f} logins/s** on "
        f"{cores} cores. It is measured again right before each backend's login test; that value sets the "
        "limit in the table. A login is the whole flow: GET /authorize → GET login page → POST identifier "
        "→ POST password (one argon2id verify) → POST /token (code + PKCE).",
        "",
        "| Backend | browsers | logins/s | argon2 ms | limit/s | % of limit | p50 ms | p99 ms | failures | server CPU ms/login |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for backend, data in results.logins.items():
        rate = float(data["logins_per_s"])
        own_limit = float(data.get("limit_per_s") or limit or 1)
        lines.append(
            f"| {TARGET_NAMES[backend]} | {data['concurrency']} | {rate:.1f} | {float(data.get('argon2_ms', 0)):.1f} | "
            f"{own_limit:.1f} | {100 * rate / own_limit:.0f} % | "
            f"{float(data['p50_ms']):.0f} | {float(data['p99_ms']):.0f} | {data['failures']} | "
            f"{float(data.get('cpu_per_login_ms', 0)):.1f} |"
        )
    if results.spike:
        lines += [
            "",
            "Token requests while logins saturate the hash pool (client_credentials ES256 at a fixed offered "
            "load, alone, then while the login driver runs at full concurrency):",
            "",
            "| Backend | offered req/s | alone: req/s | p50 ms | p99 ms | during logins: req/s | p50 ms | p99 ms | logins/s meanwhile |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for backend, data in results.spike.items():
            q: dict[str, Any] = data["quiet"]  # type: ignore[assignment]
            b: dict[str, Any] = data["during_logins"]  # type: ignore[assignment]
            lines.append(
                f"| {TARGET_NAMES[backend]} | {float(data['offered_rps']):.0f} | {q['rps']:.0f} | {q['p50_ms']:.1f} | "
                f"{q['p99_ms']:.1f} | {b['rps']:.0f} | {b['p50_ms']:.1f} | {b['p99_ms']:.1f} | "
                f"{float(data['logins_per_s']):.1f} |"
            )
    return lines


def markdown(results: Results) -> str:
    cfg = results.config
    scale_cfg: dict[str, Any] = cfg["scale"] if isinstance(cfg.get("scale"), dict) else {}  # type: ignore[assignment]
    out = [
        "# AuthPI Server benchmark: latest run",
        "",
        f"Run of {results.machine.get('Date', '?')}, {results.seconds / 60:.1f} min. "
        f"`authpi serve --workers {cfg.get('workers')}` on SQLite and on PostgreSQL, and panva's "
        f"oidc-provider {results.machine.get('oidc-provider', '?')} with {cfg.get('workers')} cluster workers, "
        f"driven by `wrk` ({cfg.get('wrk_threads')} threads) on loopback: {cfg.get('warmup_s'):.0f} s warm-up, "
        f"then {cfg.get('duration_s'):.0f} s measured per scenario. CPU s/1k req = server CPU seconds "
        "(user + system, whole process tree) per 1,000 requests; on PostgreSQL the database's own CPU is "
        "shown beside it. ⚠ = see the notes: request errors, server tracebacks, an exhausted token pool, "
        "or other processes using the CPU during the run.",
        "",
        *(
            [f"Extra server environment: `{' '.join(f'{k}={v}' for k, v in cfg['server_env'].items())}`.", ""]
            if cfg.get("server_env")
            else []
        ),
        "![chart](latest.png)",
        "",
        "## Results",
        "",
        *_main_table(results),
        "",
        "## Targets of issue 14 (2 cores, 2 workers; ratios are req/s against the peer in this run)",
        "",
        *_issue14(results),
        "",
        "## Other targets",
        "",
        *_targets(results),
        "",
        "## Password logins",
        "",
        *_logins(results),
        "",
        "## Worker memory (RSS after the run)",
        "",
        "| Server | RSS per worker |",
        "|---|---|",
        *[
            f"| {TARGET_NAMES.get(k, k)} | {' / '.join(f'{x:.0f} MB' for x in v)} |"
            for k, v in results.rss_mb.items()
        ],
        "",
        *_rss_growth(results),
        "## How the data was seeded",
        "",
        "* Issuers, the password auth method, the M2M clients (ES256, RS256), the web client and the "
        "login users (with passwords) are created through the Core API.",
        f"* The list-depth scenario's {cfg.get('directory_users', 0):,} users are bulk-inserted with SQL into "
        "`users` (same columns, ID format and username key/hash that `POST user` writes for a password-less "
        "user): through the API they would take up to an hour per backend (see the POST user rate). The page-2,000 "
        "cursor is the ID of the last user of page 1,999, found with SQL; PostgreSQL's `users` is ANALYZEd "
        "after the insert, SQLite is left as the server leaves it.",
        "* Refresh tokens: one real login and code exchange, then that rp session and refresh token are "
        "cloned (a new rp session row and `refresh_tokens` row each) and the JWTs are signed by the server's "
        "own token code with the issuer's key; one of them is spent over HTTP before the run as a check. "
        "The Lua script walks the pool, one token per request, split between wrk threads; the warm-up "
        "uses a separate slice, so no token is ever presented twice.",
        f"* The events-list scenarios' {cfg.get('events', 0):,} events are bulk-inserted with SQL for the "
        "bench account, cloned from the real events the Core API seeding and the login emitted (rows exactly "
        "as `events.emit` writes them) and spread over 8 issuers, a skewed population of users, 3 clients "
        "per issuer, the last 30 days and a weighted type mix (mostly refreshes and new sessions). The deep "
        "cursors (page ~20,000 of all events; the deepest page within the `event_types` filter, up to "
        "20,000) are the ID of the last event of the page before, found with SQL and checked through the "
        "API; PostgreSQL's `events` is ANALYZEd after the insert.",
        "* `/introspect` and `/userinfo` use one user access token from a real login (so each call also "
        "checks revocation and the session behind it).",
        "* The peer: its web client signs in through its own authorization-code flow (an interaction page "
        "that approves at once), its userinfo / introspection token is the opaque access token of that "
        "sign-in (oidc-provider's userinfo accepts only opaque tokens), and its refresh pool is cloned inside "
        "the peer from one real refresh token (a session, grant and refresh-token record per clone, through "
        "its own adapter), like ours. Both workers share one in-memory store held by the cluster primary.",
        f"* `cc_es256_scale`: the account is brought to {int(scale_cfg.get('issuers', 0)):,} issuers and "
        f"{int(scale_cfg.get('clients', 0)):,} clients by SQL, clones of an issuer and an ES256 M2M client "
        "created through the Core API (new IDs and secrets, and each issuer's own signing keys, sealed "
        "like the server seals them); the requests rotate over "
        f"{int(scale_cfg.get('spread', 0)):,} clients of as many issuers, after a pass that fills the "
        "caches. It runs after every other scenario, so those see the small database."
        if scale_cfg
        else "",
        "",
        *_seeding(results),
        "",
        "## Machine",
        "",
        *_machine(results),
        "",
    ]
    notes = list(results.notes)
    noisy = [r for r in results.rows if r.foreign_cpu_pct > 10]
    if noisy:
        notes.append(
            "Other processes were using the machine during some runs (their share of all cores is in the "
            "row notes below); those rows understate what the servers can do on a quiet machine."
        )
    for row in results.rows:
        if row.note:
            notes.append(f"{TARGET_NAMES[row.target]} {LABELS.get(row.scenario, row.scenario)}: {row.note}")
    splits = [
        f"{LABELS.get(r.scenario, r.scenario)} ({TARGET_NAMES[r.target]}) {r.worker_split}"
        for r in results.rows
        if r.worker_split and _unbalanced(r.worker_split)
    ]
    if splits:
        notes.append(
            "CPU split between the two workers was uneven (% per worker) in: " + "; ".join(splits)
        )
    if notes:
        out += ["## Notes", "", *[f"* {n}" for n in notes], ""]
    if results.profiles:
        out += [
            "## Profiles",
            "",
            "py-spy samples of both workers' event-loop threads while the scenario ran (separately from "
            "the measured runs); full listings and collapsed stacks are in `profiles/`. `Runner.run` self "
            "time is the event loop inside uvloop (idle waiting plus C-level I/O).",
            "",
        ]
        for name, text in results.profiles.items():
            top = [ln for ln in text.splitlines() if ln.startswith("  ")][:12]
            out += [f"### {name}", "", "```", *top, "```", ""]
    out += ["## Closing note: issue 14's targets in this run", "", *_issue14(results), ""]
    return "\n".join(out)


def _seeding(results: Results) -> list[str]:
    """Seeding times per backend (and the peer's refresh pool)."""
    lines = [
        "| Server | Core API seeding | directory (SQL) | events (SQL) | issuers / clients (SQL) | refresh pool |",
        "|---|---|---|---|---|---|",
    ]
    for k, v in results.seeding.items():
        pool = v.get("refresh_pool")
        scale = v.get("scale")
        cells = [
            TARGET_NAMES.get(k, k),
            f"{v['core_api_seconds']} s" if "core_api_seconds" in v else "–",
            f"{v['directory_users']:,} users in {v['directory_sql_seconds']} s" if v.get("directory_users") else "–",
            f"{v['events']:,} in {v['events_sql_seconds']} s" if "events" in v else "–",
            f"{scale['issuers']:,} / {scale['clients']:,} in {scale['seconds']} s" if isinstance(scale, dict) else "–",
            f"{pool['tokens']:,} tokens ({pool['mode']}) in {pool['seconds']} s" if isinstance(pool, dict) else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _rss_growth(results: Results) -> list[str]:
    """Largest worker RSS after each scenario, in run order: where memory grows."""
    lines = []
    for target in TARGETS:
        rows = [r for r in results.rows if r.target == target and getattr(r, "rss_mb", 0)]
        if not rows:
            continue
        steps = ", ".join(f"{r.scenario} {r.rss_mb:.0f}" for r in rows)
        lines.append(f"* {TARGET_NAMES[target]}, largest worker RSS (MB) after each scenario: {steps}.")
    return [*lines, ""] if lines else []


def _unbalanced(split: str) -> bool:
    try:
        parts = [float(p) for p in split.split("/")]
    except ValueError:
        return False
    return len(parts) > 1 and max(parts) - min(parts) > 30


# --- the chart ------------------------------------------------------------------------------------

COLORS = {"sqlite": (46, 110, 200), "postgres": (60, 160, 90), "peer": (220, 120, 40)}


def _font(size: int) -> Any:
    from PIL import ImageFont

    for path in (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ):
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def chart(results: Results, path: Path) -> None:
    from PIL import Image, ImageDraw

    keys = [k for k in ORDER if any(r.scenario == k for r in results.rows)]
    targets = [t for t in TARGETS if any(r.target == t for r in results.rows)]
    bar, gap = 14, 12
    group = bar * len(targets) + gap
    left, top, panel_w, mid = 300, 70, 520, 60
    width = left + panel_w * 2 + mid + 40
    height = top + group * max(len(keys), 1) + 70
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    title, small, tiny = _font(18), _font(13), _font(11)
    draw.text((20, 14), "AuthPI Server vs oidc-provider — req/s (log) and p99 latency (log)", fill="black", font=title)
    legend_x = 20
    for t in targets:
        draw.rectangle([legend_x, 44, legend_x + 12, 56], fill=COLORS[t])
        draw.text((legend_x + 18, 42), TARGET_NAMES[t], fill="black", font=small)
        legend_x += 150

    def panel(x0: int, values: dict[tuple[str, str], float], label: str) -> None:
        present = [v for v in values.values() if v > 0]
        if not present:
            return
        lo = 10 ** math.floor(math.log10(min(present)))
        hi = 10 ** math.ceil(math.log10(max(present)))
        if hi <= lo:
            hi = lo * 10
        span = math.log10(hi) - math.log10(lo)

        def x_of(v: float) -> float:
            return x0 + panel_w * (math.log10(max(v, lo)) - math.log10(lo)) / span

        decade = lo
        while decade <= hi:
            x = x_of(decade)
            draw.line([x, top - 4, x, height - 50], fill=(225, 225, 225))
            draw.text((x - 10, height - 46), f"{decade:g}", fill="gray", font=tiny)
            decade *= 10
        draw.text((x0, height - 28), label, fill="black", font=small)
        for i, key in enumerate(keys):
            for j, t in enumerate(targets):
                v = values.get((key, t))
                if not v:
                    continue
                y = top + i * group + j * bar
                draw.rectangle([x0, y, x_of(v), y + bar - 2], fill=COLORS[t])
                draw.text((x_of(v) + 4, y), _fmt(v), fill="black", font=tiny)

    rps = {(r.scenario, r.target): r.rps for r in results.rows}
    p99 = {(r.scenario, r.target): r.p99_ms for r in results.rows}
    for i, key in enumerate(keys):
        draw.text((20, top + i * group + (group - gap) / 2 - 8), LABELS[key], fill="black", font=small)
    panel(left, rps, "requests per second (log scale)")
    panel(left + panel_w + mid, p99, "p99 latency, ms (log scale)")
    img.save(path)


def write(results: Results, out: Path) -> None:
    (out / "latest.md").write_text(markdown(results))
    try:
        chart(results, out / "latest.png")
    except ImportError:
        (out / "latest.md").write_text(markdown(results) + "\n(Pillow is not installed: no chart.)\n")
