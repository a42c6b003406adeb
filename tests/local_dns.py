"""A DNS server in the test process, for the DNS lookups of SSO domain verification."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


@contextmanager
def dns_server() -> Iterator[tuple[dict[str, list[str]], int]]:
    """A UDP DNS server answering TXT queries from the returned dict (name → values)."""
    records: dict[str, list[str]] = {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            if name in records and question.rdtype == dns.rdatatype.TXT:
                quoted = [f'"{value}"' for value in records[name]]
                response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", *quoted))
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            sock.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield records, sock.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        sock.close()
