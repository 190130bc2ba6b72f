"""The outbound guard plugged into the HTTP clients the senders use.

- httpx (FHIR servers, their token endpoints, synchronous queries): a network backend under httpcore's pool, so
  every TCP connection resolves through the guard and connects to an address it has just checked; the URL's host
  name still goes into ``Host`` and the TLS server name.
- aiohttp (webhooks): a resolver; aiohttp connects only to the addresses a resolver returns. aiohttp skips the
  resolver for literal addresses, so the webhook sender checks those itself (``check_literal``).

Neither client reads proxy variables from the environment: a proxy would connect on our behalf to an address
nobody checked. Neither follows redirects (set where the clients are made).
"""

from __future__ import annotations

import ipaddress
import socket
import typing

import httpcore
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult

from healthway.domain.outbound import REFUSED
from healthway.net.outbound import AddressRefused, OutboundGuard


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, guard: OutboundGuard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._guard.addresses(host, port)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("destinations are reached over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (its exception mapping, TLS context, HTTP/1.1) over a guarded connection pool."""

    def __init__(self, guard: OutboundGuard) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(guard),
        )


def guarded_client(guard: OutboundGuard, *, timeout: float) -> httpx.AsyncClient:
    """An httpx client for destinations: guarded connections, no redirects, no proxy from the environment."""
    return httpx.AsyncClient(
        timeout=timeout, transport=GuardedTransport(guard), follow_redirects=False, trust_env=False
    )


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for webhook destinations: the guard's checked addresses, nothing else."""

    def __init__(self, guard: OutboundGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self._guard.addresses(host, port)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


def check_literal(guard: OutboundGuard, host: str) -> None:
    """aiohttp does not ask its resolver about literal addresses: check them here. Raises AddressRefused."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if not guard.policy.allows(address):
        raise AddressRefused(REFUSED)


class AnswerTooLarge(Exception):
    """A destination's answer is larger than the cap; reading stopped there (the message is safe to show)."""


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """The body of a streamed response, or AnswerTooLarge as soon as more than ``limit`` bytes arrived: an answer
    never costs more memory than the cap, whatever the peer sends."""
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise AnswerTooLarge(f"the destination's answer is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():  # decoded bytes: the cap also bounds decompression
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(f"the destination's answer is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
