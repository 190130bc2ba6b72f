"""MLLP peers (DESIGN §1, §4): the client networks a source's MLLP connections come from. Pure: no I/O.

An MLLP connection carries no credential of its own, so its peer address names the source: the address is
matched against every source's CIDRs, and a peer may also require a TLS client certificate with a given SHA-256
fingerprint. So that one connection maps to one source, the networks of two different sources never overlap.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from healthway.errors import InvalidRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Peer:
    """One allowed network of one source; ``fingerprint`` is the required client certificate's SHA-256 (hex)."""

    id: str
    source_id: str
    environment_id: str
    network: Network
    fingerprint: str | None = None


def parse_cidr(text: str) -> Network:
    """``10.1.2.0/24``, ``2001:db8::/32`` or a single address. Host bits must be zero (``10.1.2.3/24`` is a typo
    for a network, refused rather than guessed). IPv4-mapped IPv6 networks are read as IPv4."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        raise InvalidRequest("cidr must be an IP network such as 10.1.2.0/24 (host bits zero) or one address") from None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped and network.prefixlen >= 96:
        return ipaddress.ip_network(f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}")
    return network


def parse_fingerprint(text: str) -> str:
    """A certificate's SHA-256 as 64 hex digits; colons and case as ``openssl x509 -fingerprint`` prints them are
    accepted. Returned lower case, without colons."""
    value = text.strip().replace(":", "").lower()
    if not _HEX64.fullmatch(value):
        raise InvalidRequest("client_cert_sha256 must be a SHA-256 fingerprint: 64 hex digits")
    return value


def address_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A socket's peer address; an IPv4-mapped IPv6 address (a dual-stack listener's view of IPv4) as IPv4."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def overlapping(network: Network, source_id: str, peers: Iterable[Peer]) -> Peer | None:
    """The first peer of another source whose network overlaps ``network`` (a connection must map to one source)."""
    for peer in peers:
        if peer.source_id != source_id and peer.network.version == network.version and peer.network.overlaps(network):
            return peer
    return None


def match(host: str, peers: Iterable[Peer]) -> list[Peer]:
    """The peers whose network holds ``host``, all of one source (networks of different sources do not overlap).
    Empty when the address is unknown: the connection is closed before any byte is read."""
    try:
        address = address_of(host)
    except ValueError:
        return []
    return [peer for peer in peers if address.version == peer.network.version and address in peer.network]


def admits(peers: Iterable[Peer], fingerprint: str | None) -> Peer | None:
    """Of the matching peers, the one that admits a connection presenting a client certificate with
    ``fingerprint`` (None: no certificate). A peer without a required fingerprint admits any connection."""
    for peer in peers:
        if peer.fingerprint is None or peer.fingerprint == fingerprint:
            return peer
    return None
