"""The login-per-second load driver, run as its own process (``python -m bench.login_load``).

Each of ``--concurrency`` simulated browsers loops: forget cookies → GET /authorize → GET the login
page → POST the identifier → POST the password → follow the code into POST /token
(authorization_code + PKCE). One iteration is one login; its latency is the whole flow. Logins that
complete during the first ``--warmup`` seconds are not counted. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from bench.flows import Browser, FlowError, WebClient


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def drive(args: argparse.Namespace) -> dict[str, object]:
    client = WebClient(args.issuer_url, args.client_id, args.client_secret, args.redirect_uri)
    users = args.users.split(",")
    start = time.monotonic()
    measure_from = start + args.warmup
    stop_at = measure_from + args.duration
    latencies: list[float] = []
    failures: list[str] = []

    async def browser_loop(slot: int) -> None:
        browser = Browser(client, timeout=args.timeout)
        try:
            i = 0
            while time.monotonic() < stop_at:
                browser.forget()
                user = users[(slot + i) % len(users)]
                i += 1
                began = time.monotonic()
                try:
                    code, verifier = await browser.login(user, args.password)
                    await browser.exchange(code, verifier)
                except (FlowError, OSError, ValueError, KeyError) as exc:
                    if began >= measure_from:
                        failures.append(str(exc)[:200])
                    continue
                except Exception as exc:  # httpx errors: count and go on
                    if began >= measure_from:
                        failures.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                ended = time.monotonic()
                if began >= measure_from and ended <= stop_at:
                    latencies.append(ended - began)
        finally:
            await browser.aclose()

    await asyncio.gather(*(browser_loop(i) for i in range(args.concurrency)))
    return {
        "logins": len(latencies),
        "seconds": args.duration,
        "logins_per_s": len(latencies) / args.duration,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": (statistics.fmean(latencies) * 1000) if latencies else 0.0,
        "failures": len(failures),
        "failure_examples": failures[:3],
        "concurrency": args.concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issuer-url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--redirect-uri", required=True)
    parser.add_argument("--users", required=True, help="comma-separated usernames")
    parser.add_argument("--password", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(drive(args))
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
