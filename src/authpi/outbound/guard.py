"""Outbound HTTP that cannot be pointed at the server's own network (decision 32).

A URL names a host; what matters is the address the connection goes to. The guard resolves the
host itself, refuses it when any of its addresses is not globally routable (private, loopback,
link-local, multicast, reserved …) unless AUTHPI_ALLOW_PRIVATE_NETWORKS is on, and then connects to
the address it checked. A second lookup by the socket layer, which a rebinding DNS server could
answer differently, never happens. TLS still verifies the certificate against the host name.

No proxy from the environment is used (it would connect on our behalf, unchecked), and redirects
are not followed (their target would be another unchecked URL).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

import httpcore2
import httpx2

from authpi.services.outbound_addresses import IPAddress, is_public, literal_address


class AddressRefused(Exception):
    """The target resolves to an address outbound requests may not reach."""


async def resolve(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to for ``host``, after checking every address the name has."""
    literal = literal_address(host)
    if literal is not None:
        candidates: list[IPAddress] = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise AddressRefused(f"cannot resolve {host}: {exc.strerror}") from None
        candidates = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not candidates:
            raise AddressRefused(f"{host} has no address")
    if not allow_private:
        for address in candidates:
            if not is_public(address):
                raise AddressRefused(
                    f"refused: {host} resolves to {address}, a private or reserved address "
                    "(AUTHPI_ALLOW_PRIVATE_NETWORKS is off)"
                )
    return str(candidates[0])


class GuardedBackend(httpcore2.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to checked addresses."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        address = await resolve(host, port, allow_private=self.allow_private)
        return await self._inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise AddressRefused("outbound requests do not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx2.AsyncHTTPTransport):
    """httpx's transport over ``GuardedBackend``."""

    def __init__(self, *, allow_private: bool, max_connections: int) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(allow_private=allow_private),
        )


def client(*, allow_private: bool, timeout: float, max_connections: int = 16) -> httpx2.AsyncClient:
    """An HTTP client for outbound requests (see the module docstring)."""
    return httpx2.AsyncClient(
        transport=GuardedTransport(allow_private=allow_private, max_connections=max_connections),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
