"""Focused measurement: client_credentials req/s with the batched machine-token event writer on
(``AUTHPI_EVENT_BUFFER=10000``) and off (``0``), same machine, same run, ``--workers 2``.

    PYTHONPATH=src python -m bench.machine_events [--seconds 10] [--connections 32] [--rounds 2]

A small httpx load generator (not wrk), so absolute numbers are lower than ``scripts/bench``'s;
the comparison between the two settings is what it is for. Rounds alternate on/off so a busy
machine affects both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from authpi_admin import AuthPIAdmin
from tests.harness import run_server


async def _seed(url: str, api_key: tuple[str, str]) -> tuple[str, str, str]:
    async with AuthPIAdmin(api_key=api_key, base_url=url) as admin:
        issuer = await admin.issuers.create({"name": "bench machine events"})
        client = await admin.issuer(issuer.id).clients.create(
            {"name": "m2m", "type": "m2m", "scopes": ["invoices:read"]}  # type: ignore[typeddict-item]
        )
        return issuer.id, client.id, client.secret or ""


async def _load(url: str, auth: tuple[str, str], seconds: float, connections: int) -> tuple[int, int]:
    ok = failed = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(auth=auth, limits=limits, timeout=30) as http:

        async def worker() -> None:
            nonlocal ok, failed
            while time.monotonic() < stop:
                answer = await http.post(url, data={"grant_type": "client_credentials"})
                if answer.status_code == 200:
                    ok += 1
                else:
                    failed += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    return ok, failed


def measure(buffer: str, seconds: float, connections: int) -> float:
    with run_server(
        "sqlite", {"AUTHPI_EVENT_BUFFER": buffer, "AUTHPI_LOG_LEVEL": "warning"}, workers=2
    ) as server:
        issuer_id, client_id, secret = asyncio.run(_seed(server.url, server.api_key))
        token_url = f"{server.url}/{issuer_id}/token"
        asyncio.run(_load(token_url, (client_id, secret), 2, connections))  # warm-up
        ok, failed = asyncio.run(_load(token_url, (client_id, secret), seconds, connections))
        rate = ok / seconds
        print(f"AUTHPI_EVENT_BUFFER={buffer:>5}: {rate:8.1f} req/s ({ok} ok, {failed} failed)", flush=True)
        return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"10000": [], "0": []}
    for _ in range(args.rounds):
        for buffer in ("10000", "0"):
            results[buffer].append(measure(buffer, args.seconds, args.connections))
    for buffer, rates in results.items():
        print(f"mean AUTHPI_EVENT_BUFFER={buffer:>5}: {sum(rates) / len(rates):8.1f} req/s")


if __name__ == "__main__":
    main()
