"""Schemathesis fuzzing of every Core API operation against the real server.

The schema is the one the running server publishes at ``/openapi.json``. Each operation gets a bounded,
seeded run of schema-valid (positive) and schema-invalid (negative) requests, sent with the bootstrap
API key. A response fails the run when it is a 5xx, has an undeclared status code or content type, or
does not match the declared response schema.

The account ID is always the caller's. The other path IDs are, in half of the cases, resources created
just for that case (issuer, auth method, client, user, API key), so the fuzzer reaches the handlers and
may update, revoke or delete what it is given without ever touching the bootstrap key it authenticates
with; in the other half they stay as generated, which exercises the lookups of unknown IDs.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.errors import FailureGroup

from tests.harness import RunningServer

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Bounded and seeded so a run is repeatable and quick; raise them locally for a deeper search.
MAX_EXAMPLES = int(os.environ.get("AUTHPI_TEST_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("AUTHPI_TEST_FUZZ_SEED", "20240601"))
MAX_REPORTED_FAILURES = 3


class Resources:
    """Creates, through the API, the resources a path names (a fresh set for each case)."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, auth=server.api_key, timeout=30)
        self.prefix = f"/v1/accounts/{server.account_id}"
        self.created = 0

    def close(self) -> None:
        self.http.close()

    def _create(self, path: str, body: dict[str, Any]) -> str:
        response = self.http.post(self.prefix + path, json=body)
        assert response.status_code == 201, f"creating a fuzz target at {path}: {response.text}"
        self.created += 1
        created: str = response.json()["data"]["id"]
        return created

    def auth_method(self, issuer_id: str) -> str:
        body = {"name": "Password", "method": "password", "first_factor_only": True, "settings": {}}
        return self._create(f"/issuers/{issuer_id}/auth-methods", body)

    def client(self, issuer_id: str) -> str:
        openid = {"redirect_uris": ["https://app.example.com/callback"]}
        body = {"name": "fuzz target", "type": "web", "settings": {"openid": openid}}
        return self._create(f"/issuers/{issuer_id}/clients", body)

    def user(self, issuer_id: str) -> str:
        body = {"username_type": "email", "username": f"fuzz-{self.created}@example.com"}
        return self._create(f"/issuers/{issuer_id}/users", body)

    def fill(self, path_parameters: dict[str, Any]) -> None:
        path_parameters["account_id"] = self.server.account_id
        if "key_id" in path_parameters:
            scopes = {"scopes": ["issuers:read"]}
            path_parameters["key_id"] = self._create(
                "/api-keys", {"name": "fuzz target", "restrictions": scopes}
            )
        if "issuer_id" not in path_parameters:
            return
        issuer_id = path_parameters["issuer_id"] = self._create("/issuers", {"name": "fuzz target"})
        children = {"method_id": self.auth_method, "client_id": self.client, "user_id": self.user}
        for name, make in children.items():
            if name in path_parameters:
                path_parameters[name] = make(issuer_id)


def _fuzz_operation(operation: Any, resources: Resources, statuses: Counter[str], failures: list[str]) -> int:
    """Run one operation's cases; return how many were sent. Failures are collected, not raised,
    so every operation is fuzzed in full and the report lists them all."""
    strategies = [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]
    sent = 0
    found = 0

    @seed(SEED)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(case=st.one_of(strategies), use_real_ids=st.booleans())
    def run(case: Any, use_real_ids: bool) -> None:
        nonlocal sent, found
        if case.path_parameters is not None:
            if use_real_ids:
                resources.fill(case.path_parameters)
            else:
                case.path_parameters["account_id"] = resources.server.account_id
        sent += 1
        response = case.call(auth=resources.server.api_key, timeout=30)
        statuses[f"{response.status_code}"] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            found += 1
            if found <= MAX_REPORTED_FAILURES:
                failures.append(f"{operation.label}:\n{str(group)[:2000]}")

    run()
    return sent


def test_every_operation_conforms_to_its_openapi_declaration(server: RunningServer) -> None:
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    resources = Resources(server)
    statuses: Counter[str] = Counter()
    failures: list[str] = []
    per_operation: dict[str, int] = {}
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            per_operation[operation.label] = _fuzz_operation(operation, resources, statuses, failures)
    finally:
        resources.close()
    elapsed = time.monotonic() - started
    summary = (
        f"[{server.backend}] fuzzed {len(per_operation)} operations, {sum(per_operation.values())} cases "
        f"in {elapsed:.1f}s; statuses {dict(sorted(statuses.items()))}"
    )
    print(summary)
    assert len(per_operation) >= 20, summary
    assert not failures, summary + "\n\n" + "\n\n".join(failures)
