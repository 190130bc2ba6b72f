"""The outbound-address policy: which addresses a destination (webhook, FHIR server and its token URL, MLLP peer,
SFTP server) may be reached at, and which URLs may be registered.

One rule for every outbound connection, checked twice: when a destination is created (its URL's scheme and any
literal address in it) and every time a sender connects (each resolved address, so that a name which later resolves
somewhere else is refused too).

1. Multicast, unspecified (``0.0.0.0/8``, ``::``) and reserved addresses: never.
2. Loopback and link-local (cloud metadata lives at 169.254.169.254): only with ``allow_loopback``.
3. Addresses in ``deny_networks``: never.
4. Everything else, private ranges included (hospital networks live there): allowed.
5. Webhook, FHIR and token URLs must be ``https`` unless ``allow_http``.

An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is judged as the IPv4 address it maps.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from healthway.errors import InvalidRequest

if TYPE_CHECKING:
    from healthway.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # Linux connects 0.0.0.0 to itself
_LOCAL_NAMES = ("localhost", ".localhost")  # RFC 6761: always loopback, whatever DNS says
REFUSED = "the destination's address is not allowed"
# DNS labels of letters, digits and hyphens (underscores too: some internal zones use them), dot-separated.
_HOST_NAME = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$")


def valid_host_name(name: str) -> bool:
    """A name DNS could hold (an internationalized one in its IDNA form): no spaces, no empty labels."""
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return len(ascii_name) <= 253 and bool(_HOST_NAME.match(ascii_name))


@dataclass(frozen=True)
class OutboundPolicy:
    allow_loopback: bool = False
    allow_http: bool = False
    deny_networks: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        return cls(
            allow_loopback=settings.allow_loopback_destinations,
            allow_http=settings.allow_http_destinations,
            deny_networks=settings.destination_deny_networks,
        )

    def allows(self, address: str | IPAddress) -> bool:
        """Whether a connection to this (resolved) address is allowed."""
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if ip.is_loopback or ip.is_link_local:  # before is_reserved: ::1 lies in the reserved ::/8
            return self.allow_loopback and not self._denied(ip)
        if ip.is_multicast or ip.is_unspecified or ip.is_reserved or ip in _THIS_NETWORK:
            return False
        return not self._denied(ip)

    def _denied(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.deny_networks)

    def check_host(self, host: str, field: str = "host") -> None:
        """At creation: a literal address or a ``localhost`` name must be allowed (other names are checked when
        connecting: what they resolve to today proves nothing about tomorrow). Raises InvalidRequest."""
        name = host.strip("[]").rstrip(".").lower()
        try:
            allowed = self.allows(name)
        except ValueError:  # a name, not an address
            if not valid_host_name(name):
                raise InvalidRequest(f"{field} has an invalid host name (letters, digits, hyphens and dots)") from None
            allowed = self.allow_loopback or not (name == _LOCAL_NAMES[0] or name.endswith(_LOCAL_NAMES[1]))
        if not allowed:
            raise InvalidRequest(f"{field} points at an address destinations may not reach")

    def check_url(self, url: str, field: str = "url") -> str:
        """At creation: an http(s) URL with a host, https unless plain HTTP is allowed, no credentials, and an
        allowed host. Raises InvalidRequest."""
        parts = urlsplit(url)
        schemes = ("http", "https") if self.allow_http else ("https",)
        if parts.scheme not in schemes or not parts.hostname:
            wanted = "an http:// or https://" if self.allow_http else "an https://"
            raise InvalidRequest(f"{field} must be {wanted} URL")
        if parts.username or parts.password:
            raise InvalidRequest(f"{field} must not carry credentials")
        try:
            parts.port  # noqa: B018 (raises ValueError for a port out of range)
        except ValueError:
            raise InvalidRequest(f"{field} has an invalid port") from None
        self.check_host(parts.hostname, field)
        return url
