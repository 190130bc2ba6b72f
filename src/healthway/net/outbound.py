"""Outbound connections to destinations: resolve a host, check every address against the policy, hand back the
addresses a sender may connect to (it connects to one of those, never resolves again: no DNS rebinding between
the check and the connection).

``Resolver`` is the boundary (a Protocol); ``SystemResolver`` the real one and ``healthway.testing.FakeResolver``
the fake. The HTTP senders plug ``OutboundGuard`` into their clients (``delivery.guarded``), so that every
connection they open, token requests included, passes here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Protocol

from healthway.domain.outbound import REFUSED, OutboundPolicy


class AddressRefused(OSError):
    """The destination's host resolves to an address the policy refuses (or does not resolve). An OSError, so
    that connection code treats it like any other failure to connect; the message is safe to show."""


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` (IPv4 or IPv6 text). Raises OSError when it does not resolve."""
        ...


class SystemResolver:
    async def resolve(self, host: str, port: int) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


@dataclass(frozen=True)
class OutboundGuard:
    """The policy plus a resolver: the one gate of every outbound destination connection."""

    policy: OutboundPolicy
    resolver: Resolver

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for ``host``; AddressRefused when any of them is refused (a name whose
        answers mix allowed and refused addresses is refused whole) or when the name does not resolve."""
        literal = _literal(host)
        if literal is not None:
            found = [literal]
        else:
            try:
                found = await self.resolver.resolve(host, port)
            except OSError:
                raise AddressRefused("the destination's host name does not resolve") from None
        if not found or not all(self.policy.allows(address) for address in found):
            raise AddressRefused(REFUSED)
        return found
