"""The write-heavy mixed load driver, run as its own process (``python -m bench.mixed_load``).

Each of ``--connections`` simulated clients loops over a weighted mix:

* ``create``: ``POST …/users`` with an ``Idempotency-Key``, then the same request again, which must
  replay the same user (a different ID is a duplicate);
* ``update``: ``GET`` one of a few shared counter issuers, then ``PATCH`` its ``metadata.n`` to n + 1
  with ``If-Match``; a 412 is the expected answer to a lost race (counted, not an error);
* ``refresh``: spend the client's refresh token (rotation), keeping the new one;
* ``login``: the whole hosted password login and code exchange (argon2 included).

A ``503`` with ``Retry-After`` (load shedding: the in-flight cap, an exhausted pool) is retried after
the delay it names, as a well-behaved client does, up to ``RETRIES`` times; the retries are counted
as ``shed`` and their waiting is part of the operation's latency. Errors are the 5xx answers left
after that, transport failures and anything unexpected. Afterwards each counter is read
back: its ``n`` must equal the number of 200s its PATCHes got (a lower value is a lost update).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import time
from collections import Counter

import httpx

from bench.flows import Browser, FlowError, WebClient
from bench.login_load import percentile

MIX = {"create": 4, "update": 4, "refresh": 2, "login": 1}
COUNTERS = 4
RETRIES = 5


class RetryAfter(httpx.AsyncBaseTransport):
    """Retries a shed request (``503`` + ``Retry-After``) after the delay the server asks for; every
    request here is safe to resend (creates carry an Idempotency-Key, updates an If-Match)."""

    def __init__(self, shed: Counter[str]) -> None:
        # Idle connections go before the server's 5 s keep-alive ends (no reuse races).
        self.inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(keepalive_expiry=4.0))
        self.shed = shed

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(RETRIES):
            response = await self.inner.handle_async_request(request)
            retry_after = response.headers.get("retry-after", "")
            if response.status_code != 503 or not retry_after.isdigit():
                return response
            await response.aclose()
            self.shed["retried"] += 1
            await asyncio.sleep(min(int(retry_after), 5) + random.random() * 0.5)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Driver:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.core = f"{args.server_url}/v1/accounts/{args.account_id}"
        self.shed: Counter[str] = Counter()
        self.http = httpx.AsyncClient(
            auth=(args.key_id, args.key_secret),
            timeout=args.timeout,
            limits=httpx.Limits(max_connections=args.connections, keepalive_expiry=4.0),
            transport=RetryAfter(self.shed),
        )
        self.client = WebClient(args.issuer_url, args.client_id, args.client_secret, args.redirect_uri)
        self.latencies: dict[str, list[float]] = {op: [] for op in MIX}
        self.statuses: Counter[str] = Counter()
        self.errors: list[str] = []
        self.duplicates = 0
        self.won: Counter[str] = Counter()
        self.counters: list[str] = []
        self.measuring = False

    def _record(self, op: str, began: float, status: int | str) -> None:
        if not self.measuring:
            return
        self.latencies[op].append(time.monotonic() - began)
        self.statuses[f"{op} {status}"] += 1
        if isinstance(status, str) or status >= 500:
            self.errors.append(f"{op}: {status}")

    async def setup(self) -> None:
        for i in range(COUNTERS):
            r = await self.http.post(
                f"{self.core}/issuers", json={"name": f"bench-counter-{i}", "metadata": {"n": 0}}
            )
            r.raise_for_status()
            self.counters.append(r.json()["data"]["id"])

    async def create(self, _: Browser, _state: dict[str, str]) -> None:
        key = secrets.token_hex(12)
        body = {"username_type": "email", "username": f"mixed-{key}@example.com"}
        path = f"{self.core}/issuers/{self.args.write_issuer_id}/users"
        headers = {"Idempotency-Key": key}
        began = time.monotonic()
        first = await self.http.post(path, json=body, headers=headers)
        self._record("create", began, first.status_code)
        began = time.monotonic()
        again = await self.http.post(path, json=body, headers=headers)
        self._record("create", began, again.status_code)
        if first.status_code == 201 and again.status_code == 201:
            if again.json()["data"]["id"] != first.json()["data"]["id"] and self.measuring:
                self.duplicates += 1

    async def update(self, _: Browser, _state: dict[str, str]) -> None:
        issuer_id = random.choice(self.counters)
        path = f"{self.core}/issuers/{issuer_id}"
        began = time.monotonic()
        current = await self.http.get(path)
        self._record("update", began, current.status_code)
        if current.status_code != 200:
            return
        n = current.json()["data"]["metadata"].get("n", 0)
        began = time.monotonic()
        patched = await self.http.patch(
            path, json={"metadata": {"n": n + 1}}, headers={"If-Match": current.headers["etag"]}
        )
        self._record("update", began, patched.status_code)
        if patched.status_code == 200:
            self.won[issuer_id] += 1  # counted during warm-up too: the check is on the final value

    async def login(self, browser: Browser, state: dict[str, str]) -> None:
        browser.forget()
        user = random.choice(self.args.users.split(","))
        began = time.monotonic()
        try:
            code, verifier = await browser.login(user, self.args.password)
            tokens = await browser.exchange(code, verifier)
        except (FlowError, httpx.HTTPError, KeyError, ValueError) as exc:
            self._record("login", began, f"{type(exc).__name__}: {str(exc)[:120]}")
            return
        self._record("login", began, 200)
        if tokens.refresh_token:
            state["refresh_token"] = tokens.refresh_token

    async def refresh(self, browser: Browser, state: dict[str, str]) -> None:
        if "refresh_token" not in state:
            await self.login(browser, state)
            return
        began = time.monotonic()
        r = await self.http.post(
            f"{self.client.issuer_url}/token",
            data={"grant_type": "refresh_token", "refresh_token": state["refresh_token"]},
            auth=(self.client.client_id, self.client.client_secret),
        )
        self._record("refresh", began, r.status_code)
        if r.status_code == 200:
            state["refresh_token"] = r.json()["refresh_token"]
        else:
            state.pop("refresh_token", None)

    async def client_loop(self, stop_at: float) -> None:
        browser = Browser(self.client, timeout=self.args.timeout, transport=RetryAfter(self.shed))
        state: dict[str, str] = {}
        ops = [op for op, weight in MIX.items() for _ in range(weight)]
        try:
            while time.monotonic() < stop_at:
                op = random.choice(ops)
                try:
                    await getattr(self, op)(browser, state)
                except httpx.HTTPError as exc:
                    self._record(op, time.monotonic(), f"{type(exc).__name__}")
        finally:
            await browser.aclose()

    async def lost_updates(self) -> dict[str, int]:
        lost = {}
        for issuer_id in self.counters:
            n = (await self.http.get(f"{self.core}/issuers/{issuer_id}")).json()["data"]["metadata"]["n"]
            lost[issuer_id] = self.won[issuer_id] - n
        return lost

    async def run(self) -> dict[str, object]:
        await self.setup()
        start = time.monotonic()
        stop_at = start + self.args.warmup + self.args.duration

        async def start_measuring() -> None:
            await asyncio.sleep(self.args.warmup)
            self.measuring = True

        await asyncio.gather(start_measuring(), *(self.client_loop(stop_at) for _ in range(self.args.connections)))
        self.measuring = False
        lost = await self.lost_updates()
        await self.http.aclose()
        every = [x for values in self.latencies.values() for x in values]
        return {
            "connections": self.args.connections,
            "seconds": self.args.duration,
            "requests": len(every),
            "rps": len(every) / self.args.duration,
            "p50_ms": percentile(every, 50) * 1000,
            "p99_ms": percentile(every, 99) * 1000,
            "by_op": {
                op: {"requests": len(v), "p50_ms": percentile(v, 50) * 1000, "p99_ms": percentile(v, 99) * 1000}
                for op, v in self.latencies.items()
            },
            "statuses": dict(sorted(self.statuses.items())),
            "shed_retries": self.shed["retried"],
            "errors": len(self.errors),
            "error_examples": sorted(set(self.errors))[:5],
            "duplicates": self.duplicates,
            "if_match_200s": sum(self.won.values()),
            "lost_updates": sum(max(0, v) for v in lost.values()),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in (
        "server-url",
        "account-id",
        "key-id",
        "key-secret",
        "write-issuer-id",
        "issuer-url",
        "client-id",
        "client-secret",
        "redirect-uri",
        "users",
        "password",
    ):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    result = asyncio.run(Driver(args).run())
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
