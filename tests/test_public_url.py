"""The issuer URL ``authpi serve`` publishes: without AUTHPI_PUBLIC_URL it is the address the server
listens on (in every worker), and a configured one that cannot be right is warned about at start."""

from __future__ import annotations

import httpx
import pytest

from tests.serve_process import ServeProcess, serve_process


def create_issuer(server: ServeProcess) -> str:
    response = httpx.post(
        f"{server.url}/v1/accounts/{server.credentials['account_id']}/issuers",
        json={"name": "published"},
        headers={"Authorization": server.basic_auth},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    issuer_id: str = response.json()["data"]["id"]
    return issuer_id


def warnings_of(server: ServeProcess) -> list[str]:
    return [line for line in server.log().splitlines() if line.startswith("authpi: warning:")]


@pytest.mark.parametrize("workers", [1, 2])
def test_without_a_public_url_the_issuer_is_the_bound_address(workers: int) -> None:
    with serve_process("sqlite", workers=workers) as server:
        issuer_id = create_issuer(server)
        expected = f"http://127.0.0.1:{server.port}/{issuer_id}"
        # Every worker answers with the same issuer (several requests reach both workers).
        for _ in range(8):
            discovery = httpx.get(f"{expected}/.well-known/openid-configuration", timeout=10)
            assert discovery.status_code == 200
            assert discovery.json()["issuer"] == expected
            assert discovery.json()["token_endpoint"] == f"{expected}/token"
        assert warnings_of(server) == []


def test_a_public_url_on_another_local_port_is_warned_about() -> None:
    with serve_process("sqlite", {"AUTHPI_PUBLIC_URL": "http://localhost:8000"}) as server:
        warnings = warnings_of(server)
    assert len(warnings) == 1, warnings
    assert "port 8000" in warnings[0] and f"port {server.port}" in warnings[0]


def test_plain_http_on_a_network_address_is_warned_about() -> None:
    with serve_process("sqlite", {"AUTHPI_PUBLIC_URL": "http://id.example.com"}) as server:
        issuer_id = create_issuer(server)
        discovery = httpx.get(f"{server.url}/{issuer_id}/.well-known/openid-configuration", timeout=10)
        warnings = warnings_of(server)
    assert discovery.json()["issuer"] == f"http://id.example.com/{issuer_id}"  # the setting still rules
    assert len(warnings) == 1 and "https" in warnings[0], warnings


def test_listening_on_every_interface_without_a_public_url_is_warned_about() -> None:
    with serve_process("sqlite", host="0.0.0.0") as server:
        issuer_id = create_issuer(server)
        discovery = httpx.get(f"{server.url}/{issuer_id}/.well-known/openid-configuration", timeout=10)
        warnings = warnings_of(server)
    assert discovery.json()["issuer"] == f"http://localhost:{server.port}/{issuer_id}"
    assert len(warnings) == 1 and "AUTHPI_PUBLIC_URL is not set" in warnings[0], warnings


def test_a_public_url_matching_the_bound_address_gets_no_warning() -> None:
    with serve_process("sqlite", {"AUTHPI_PUBLIC_URL": "https://id.example.com/"}) as server:
        assert warnings_of(server) == []
