"""Wire conventions (A.1-A.11) checked at the HTTP level: envelopes, errors, ETags, content types,
paging limits, concurrent idempotency and rate limiting."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
import pytest
from authpi_admin import AuthPIAdmin
from authpi_admin.errors import RateLimitError
from authpi_admin.generated.models import Issuer

from tests.core.conftest import KeyMaker, assert_error_envelope
from tests.harness import RunningServer, run_server

pytestmark = pytest.mark.anyio

STRONG_ETAG = re.compile(r'^"\d{13,}"$')


def assert_single(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"data"}, "single resources are a sole-key data envelope"
    data: dict[str, Any] = body["data"]
    etag = response.headers["etag"]
    assert STRONG_ETAG.match(etag), etag
    assert etag == f'"{data["updated_at"]}"'
    return data


# --- envelopes and ETags ----------------------------------------------------------------------


async def test_single_resources_carry_a_strong_etag(
    raw: httpx.AsyncClient, account_path: str, make_key: KeyMaker, unique: str
) -> None:
    created = assert_single(await raw.post(f"{account_path}/issuers", json={"name": f"etag-{unique}"}), 201)
    assert isinstance(created["created_at"], int) and created["created_at"] > 10**12
    issuer_path = f"{account_path}/issuers/{created['id']}"
    fetched = assert_single(await raw.get(issuer_path))
    assert fetched == created
    patched = assert_single(await raw.patch(issuer_path, json={"description": "x"}))
    assert patched["updated_at"] > created["updated_at"]

    method = assert_single(
        await raw.post(
            f"{issuer_path}/auth-methods",
            json={"name": "Password", "method": "password", "first_factor_only": True, "settings": {}},
        ),
        201,
    )
    assert_single(await raw.get(f"{issuer_path}/auth-methods/{method['id']}"))
    assert_single(await raw.get(account_path))
    key = await make_key([])
    assert_single(await raw.get(f"{account_path}/api-keys/{key.id}"))
    assert_single(await raw.post(f"{account_path}/api-keys/{key.id}/block"))


async def test_lists_have_the_page_envelope(
    raw: httpx.AsyncClient, account_path: str, issuer: Issuer
) -> None:
    for path in (
        "/v1/accounts",
        f"{account_path}/issuers",
        f"{account_path}/api-keys",
        f"{account_path}/issuers/{issuer.id}/auth-methods",
    ):
        response = await raw.get(path, params={"limit": 1} if "auth-methods" not in path else None)
        assert response.status_code == 200
        body = response.json()
        assert {"data", "has_more", "next_cursor"} <= set(body)
        assert isinstance(body["data"], list)
        assert isinstance(body["has_more"], bool)
        assert body["next_cursor"] is None or body["next_cursor"] == body["data"][-1]["id"]


async def test_delete_is_204_without_body(raw: httpx.AsyncClient, account_path: str, issuer: Issuer) -> None:
    response = await raw.delete(f"{account_path}/issuers/{issuer.id}")
    assert response.status_code == 204
    assert response.content == b""


# --- request bodies ---------------------------------------------------------------------------


async def test_malformed_json_is_400_invalid_request(raw: httpx.AsyncClient, account_path: str) -> None:
    response = await raw.post(
        f"{account_path}/issuers", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert_error_envelope(response.json(), "invalid_request")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
async def test_non_json_body_is_415(raw: httpx.AsyncClient, account_path: str, content_type: str) -> None:
    response = await raw.post(
        f"{account_path}/issuers", content=b'{"name": "x"}', headers={"content-type": content_type}
    )
    assert response.status_code == 415
    assert_error_envelope(response.json(), "invalid_content_type")


async def test_body_without_content_type_is_415(raw: httpx.AsyncClient, account_path: str) -> None:
    request = raw.build_request("POST", f"{account_path}/issuers", content=b'{"name": "x"}')
    assert "content-type" not in request.headers
    response = await raw.send(request)
    assert response.status_code == 415


async def test_json_with_charset_and_suffix_types_are_accepted(
    raw: httpx.AsyncClient, account_path: str, unique: str
) -> None:
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = await raw.post(
            f"{account_path}/issuers",
            content=f'{{"name": "ct-{unique}"}}'.encode(),
            headers={"content-type": content_type},
        )
        assert response.status_code == 201, (content_type, response.text)


async def test_bodyless_post_actions_need_no_content_type(
    raw: httpx.AsyncClient, account_path: str, make_key: KeyMaker
) -> None:
    key = await make_key([])
    base = f"{account_path}/api-keys/{key.id}"
    for action, status in (("block", "blocked"), ("unblock", "active")):
        request = raw.build_request("POST", f"{base}/{action}")
        assert "content-type" not in request.headers
        response = await raw.send(request)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["status"] == status
    rotated = await raw.post(f"{base}/rotate")
    assert rotated.status_code == 200
    assert set(rotated.json()["data"]) == {"secret_plain"}
    # An optional JSON body is honoured.
    blocked = await raw.post(f"{base}/block", json={"reason": "audit"})
    assert blocked.json()["data"]["status_reason"] == "audit"


async def test_text_that_cannot_be_stored_is_400_not_500(
    raw: httpx.AsyncClient, account_path: str, issuer: Issuer, unique: str
) -> None:
    # PostgreSQL rejects U+0000 in text and JSON; every backend must answer the same clean 400.
    for response in (
        await raw.post(f"{account_path}/issuers", json={"name": f"nul-{unique}\x00"}),
        await raw.patch(f"{account_path}/issuers/{issuer.id}", json={"metadata": {"k\x00": "v"}}),
        await raw.post(
            f"{account_path}/api-keys", json={"name": "k", "restrictions": {"scopes": []}, "tags": ["\x00"]}
        ),
        await raw.get(f"{account_path}/issuers", params={"q": "a\x00"}),
        await raw.get(f"{account_path}/issuers/i_%00"),
    ):
        assert response.status_code == 400, response.text
        assert_error_envelope(response.json(), "invalid_request")
    assert (await raw.get(f"{account_path}/issuers", params={"q": f"nul-{unique}"})).json()["data"] == []


# --- errors -----------------------------------------------------------------------------------


async def test_unknown_routes_are_json_404(raw: httpx.AsyncClient, account_path: str) -> None:
    for path in ("/v1/nope", f"{account_path}/nope", "/v2/accounts", "/v1/accounts/x/issuers/y/z/w"):
        response = await raw.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/json")
        assert_error_envelope(response.json(), "not_found")


async def test_wrong_method_is_a_json_error(raw: httpx.AsyncClient, account_path: str) -> None:
    response = await raw.put(f"{account_path}/issuers", json={})
    assert response.status_code == 405
    assert_error_envelope(response.json())


async def test_every_error_has_the_envelope(
    raw: httpx.AsyncClient, account_path: str, server: RunningServer, make_key: KeyMaker, issuer: Issuer
) -> None:
    weak = await make_key([])
    issuer_path = f"{account_path}/issuers/{issuer.id}"
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        responses = {
            401: await anonymous.get("/v1/me"),
            403: await raw.get(f"{account_path}/issuers", auth=(weak.id, weak.secret_plain)),
            404: await raw.get(f"{account_path}/issuers/i_missing"),
            400: await raw.post(f"{account_path}/issuers", json={}),
            412: await raw.patch(issuer_path, json={"name": "x"}, headers={"If-Match": '"1"'}),
            415: await raw.post(
                f"{account_path}/issuers", content=b"x", headers={"content-type": "text/csv"}
            ),
            422: await raw.patch(issuer_path, json={"settings": {"access": {"sessions": {"max_age": 1}}}}),
        }
        await raw.post(
            f"{issuer_path}/auth-methods", json={"name": "T", "method": "totp", "first_factor_only": False}
        )
        responses[409] = await raw.post(
            f"{issuer_path}/auth-methods", json={"name": "T", "method": "totp", "first_factor_only": False}
        )
    references = set()
    for status, response in responses.items():
        assert response.status_code == status, (status, response.text)
        body = response.json()
        assert_error_envelope(body)
        assert body["retryable"] is False
        references.add(body["reference"])
    assert len(references) == len(responses)
    assert responses[412].json()["current_etag"] == responses[412].json()["currentETag"]
    assert responses[412].json()["current_etag"] == f'"{issuer.updated_at}"'


async def test_validation_errors_list_fields(raw: httpx.AsyncClient, account_path: str) -> None:
    for response in (
        await raw.post(f"{account_path}/issuers", json={"name": 5, "status": "nope", "extra": 1}),
        await raw.post(
            f"{account_path}/api-keys", json={"name": "k", "restrictions": {"scopes": ["not a scope"]}}
        ),
    ):
        assert response.status_code in (400, 422)
        body = response.json()
        assert_error_envelope(body, "invalid_request")
        assert body["fields"]
        for problem in body["fields"]:
            assert set(problem) == {"field", "code", "message"}
            assert all(isinstance(value, str) and value for value in problem.values())
    first = (await raw.post(f"{account_path}/issuers", json={"name": 5, "status": "nope", "extra": 1})).json()
    assert {f["field"] for f in first["fields"]} == {"name", "status", "extra"}


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"limit": -1}, {"limit": "ten"}])
async def test_limit_must_be_1_to_100(
    raw: httpx.AsyncClient, account_path: str, params: dict[str, Any]
) -> None:
    for path in (f"{account_path}/issuers", f"{account_path}/api-keys", "/v1/accounts"):
        response = await raw.get(path, params=params)
        assert response.status_code == 400, (path, params)
        body = response.json()
        assert_error_envelope(body, "invalid_request")
        assert [f["field"] for f in body["fields"]] == ["limit"]


async def test_limit_bounds_are_inclusive(raw: httpx.AsyncClient, account_path: str) -> None:
    for limit in (1, 100):
        assert (await raw.get(f"{account_path}/issuers", params={"limit": limit})).status_code == 200


async def test_idempotency_key_length(raw: httpx.AsyncClient, account_path: str, unique: str) -> None:
    too_long = await raw.post(
        f"{account_path}/issuers", json={"name": unique}, headers={"Idempotency-Key": "k" * 257}
    )
    assert too_long.status_code == 400
    assert_error_envelope(too_long.json(), "invalid_request")
    longest = await raw.post(
        f"{account_path}/issuers", json={"name": unique}, headers={"Idempotency-Key": "k" * 200 + unique}
    )
    assert longest.status_code == 201


# --- concurrency ------------------------------------------------------------------------------


async def test_concurrent_requests_with_one_idempotency_key_run_once(
    server: RunningServer, account_path: str, admin: AuthPIAdmin, unique: str
) -> None:
    key = str(uuid.uuid4())
    body = {"name": f"race-{unique}"}
    async with httpx.AsyncClient(
        base_url=server.url, auth=server.api_key, limits=httpx.Limits(max_connections=10)
    ) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"{account_path}/issuers", json=body, headers={"Idempotency-Key": key})
                for _ in range(5)
            )
        )
    executed = [r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    replayed = [r for r in responses if r.status_code == 201 and "idempotent-replayed" in r.headers]
    in_flight = [r for r in responses if r.status_code == 409]
    assert len(executed) == 1, [(r.status_code, r.text) for r in responses]
    assert len(executed) + len(replayed) + len(in_flight) == 5
    winner = executed[0].json()["data"]["id"]
    assert all(r.json()["data"]["id"] == winner for r in replayed)
    for response in in_flight:
        body_409 = response.json()
        assert_error_envelope(body_409, "conflict")
        assert body_409["retryable"] is True
        assert int(response.headers["retry-after"]) >= 1
    assert [i.id async for i in admin.issuers.list_all(q=f"race-{unique}")] == [winner]
    # Once the first has finished, the same request replays.
    async with httpx.AsyncClient(base_url=server.url, auth=server.api_key) as client:
        later = await client.post(f"{account_path}/issuers", json=body, headers={"Idempotency-Key": key})
    assert later.status_code == 201
    assert later.json()["data"]["id"] == winner


# --- rate limiting (decision 20) --------------------------------------------------------------


async def test_rate_limit_answers_429_with_retry_after() -> None:
    env = {"AUTHPI_RATE_LIMITS_ENABLED": "true", "AUTHPI_RATE_LIMIT_CORE": "5/minute"}
    with run_server("sqlite", env) as limited:
        async with httpx.AsyncClient(base_url=limited.url, auth=limited.api_key) as client:
            statuses = [(await client.get("/v1/me")).status_code for _ in range(5)]
            assert statuses == [200] * 5
            blocked = await client.get(f"/v1/accounts/{limited.account_id}/issuers")
        assert blocked.status_code == 429
        retry_after = int(blocked.headers["retry-after"])
        assert 1 <= retry_after <= 60
        body = blocked.json()
        assert_error_envelope(body, "rate_limited")
        assert body["retryable"] is True
        assert body["retry_after"] == retry_after

        async with AuthPIAdmin(
            api_key=limited.api_key, base_url=limited.url, account_id=limited.account_id, retries=False
        ) as sdk:
            with pytest.raises(RateLimitError) as limited_error:
                await sdk.issuers.create({"name": "too many"})
        assert limited_error.value.retryable is True
        assert limited_error.value.retry_after is not None and 1 <= limited_error.value.retry_after <= 60
