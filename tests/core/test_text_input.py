"""Input that parses but cannot be stored faithfully is a 400 on both backends, never a 500.

Regression tests for what the OpenAPI fuzzing found (NUL characters reached PostgreSQL as 500s) and for
its neighbours the fuzzer cannot generate (unpaired surrogates, non-finite numbers, deep nesting,
out-of-range timestamps).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.harness import RunningServer

DEEP = b"[" * 100 + b"]" * 100


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{server.url}/v1/accounts/{server.account_id}", auth=server.api_key, timeout=30
    ) as client:
        yield client


def _post_issuer(http: httpx.Client, body: bytes) -> httpx.Response:
    return http.post("/issuers", content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        (b'{"note": "a\\u0000b"}', "metadata.note"),
        (b'{"a\\u0000": 1}', "metadata"),
        (b'{"note": ["ok", "\\ud800"]}', "metadata.note[1]"),
        (b'{"note": "\\udc00 alone"}', "metadata.note"),
        (b'{"n": 1e400}', "body"),
        (b'{"n": NaN}', "body"),
        (b'{"n": -Infinity}', "body"),
        (b'{"n": ' + DEEP + b"}", "body"),
    ],
)
def test_unstorable_json_is_a_400_naming_the_field(http: httpx.Client, metadata: bytes, field: str) -> None:
    response = _post_issuer(http, b'{"name": "x", "metadata": ' + metadata + b"}")
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert [f["field"] for f in body["fields"]] == [field]


def test_text_that_only_looks_like_an_escape_is_kept(http: httpx.Client) -> None:
    body = b'{"name": "x", "metadata": {"note": "\\\\u0000", "pair": "\\ud83d\\ude00", "n": 1.5e300}}'
    response = _post_issuer(http, body)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["metadata"] == {"note": "\\u0000", "pair": "\U0001f600", "n": 1.5e300}


@pytest.mark.parametrize(
    "path", ["/issuers?q=%00", "/issuers?cursor=a%00", "/issuers/i_%00", "/api-keys/k%00"]
)
def test_nul_in_the_url_is_a_400(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"


def test_timestamps_beyond_year_9999_are_a_400(http: httpx.Client) -> None:
    body = {"name": "far future", "restrictions": {"scopes": []}, "expires_at": 10**20}
    response = http.post("/api-keys", json=body)
    assert response.status_code == 400, response.text
    assert [f["field"] for f in response.json()["fields"]] == ["expires_at"]


def test_a_null_issuer_name_is_a_422(http: httpx.Client) -> None:
    issuer = http.post("/issuers", json={"name": "named"}).json()["data"]
    response = http.patch(f"/issuers/{issuer['id']}", json={"name": None})
    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["fields"]] == ["name"]
    assert http.get(f"/issuers/{issuer['id']}").json()["data"]["name"] == "named"
