"""Which client a request counts for, behind trusted proxies or not (qti_runtime.client_address)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from frontends.portal.settings import PortalSettings
from qti_runtime.client_address import ClientAddress


def request_from(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return Request(
        {"type": "http", "client": (peer, 50000), "headers": headers, "method": "GET", "path": "/"}
    )


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    clients = ClientAddress("")
    assert clients.of(request_from("203.0.113.7", "198.51.100.1")) == "203.0.113.7"


def test_behind_a_trusted_proxy_the_last_untrusted_hop_counts() -> None:
    clients = ClientAddress("10.0.0.0/8, 127.0.0.1")
    # The client may prepend anything; only what the trusted hops appended is believed.
    assert clients.of(request_from("127.0.0.1", "1.2.3.4, 198.51.100.9, 10.1.2.3")) == "198.51.100.9"
    assert clients.of(request_from("127.0.0.1", "kaputt, 10.1.2.3")) == "10.1.2.3"
    assert clients.of(request_from("127.0.0.1")) == "127.0.0.1"
    # Someone who is not a trusted proxy cannot choose an address.
    assert clients.of(request_from("203.0.113.7", "198.51.100.9")) == "203.0.113.7"


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() -> None:
    clients = ClientAddress("")
    assert clients.of(request_from("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert clients.of(request_from("::ffff:198.51.100.3")) == "198.51.100.3"
    assert clients.of(request_from("kein-host")) == "unknown"
    # Named onwards (X-Forwarded-For to the next service) as the address itself, not its network.
    assert clients.address(request_from("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2:aaaa::1"


def test_the_portal_refuses_a_mistyped_proxy_list_at_start() -> None:
    assert PortalSettings(trusted_proxies="10.0.0.0/8").trusted_proxies == "10.0.0.0/8"
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6"):
        PortalSettings(trusted_proxies="10.0.0.0/8, gateway")
