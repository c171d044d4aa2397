"""Which client sent a request, for per-client rate limits, also behind reverse proxies.

Behind a proxy (the compose gateway, a k8s ingress, the portal in front of registration) every request
comes from the proxy's address: one bucket for all clients would let one of them lock everyone out. Name
the proxies in `QTI_TRUSTED_PROXIES` so that their `X-Forwarded-For` is read instead; the header of anyone
else is ignored, or a client could choose its own address.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(text: str) -> tuple[IPNetwork, ...]:
    """`QTI_TRUSTED_PROXIES`: comma-separated addresses or networks; a typo raises ValueError."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


class ClientAddress:
    """The client's address: the peer, or behind trusted proxies the last untrusted hop they name.

    IPv6 clients count per /64 network: one connection usually has a whole /64 to choose from."""

    def __init__(self, trusted_proxies: str) -> None:
        self._trusted = trusted_networks(trusted_proxies)

    def address(self, request: Request) -> str:
        """The client's own address, e.g. to name it in X-Forwarded-For to the next service."""
        peer = self._client(request)
        return "unknown" if peer is None else str(peer)

    def of(self, request: Request) -> str:
        """The rate-limit subject: the address, an IPv6 client's /64 network."""
        peer = self._client(request)
        if peer is None:
            return "unknown"
        if isinstance(peer, ipaddress.IPv6Address):
            if peer.ipv4_mapped is not None:
                return str(peer.ipv4_mapped)
            return str(ipaddress.ip_network(f"{peer}/64", strict=False))
        return str(peer)

    def _client(self, request: Request) -> IPAddress | None:
        peer = _address(request.client.host if request.client else "")
        if peer is not None and self._is_trusted(peer):
            peer = self._last_untrusted_hop(request, peer)
        return peer

    def _last_untrusted_hop(self, request: Request, peer: IPAddress) -> IPAddress:
        hops = [hop.strip() for hop in request.headers.get("x-forwarded-for", "").split(",")]
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                break  # garbage from the client: the hop before it is all we can vouch for
            peer = address
            if not self._is_trusted(address):
                break
        return peer

    def _is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self._trusted)


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
