"""JWK Sets registered by URL: fetched with httpx behind an SSRF guard, cached per Cache-Control.

``JwksFetcher`` is the boundary (a Protocol); ``HttpJwksFetcher`` is the real one and
``healthway.testing.FakeJwksFetcher`` the fake. Cache rules (SMART Backend Services: never cache a JWK Set longer
than the client's cache headers allow):

- a set is reused for its ``max-age``, capped at 1 h; ``max-age=0``, ``no-store`` or ``no-cache`` mean it is not
  reused at all (each assertion fetches it again, so a key removed from the URL stops working at once); without
  a ``Cache-Control`` header it is kept 5 min;
- a ``kid`` missing from the last fetched set triggers at most one refetch per ``refetch_interval``, whatever the
  set's freshness, so key rotation through the URL works and a flood of unknown kids cannot turn us into a
  request amplifier (such an assertion is refused against the last set, which never lacks a removed key);
- requests waiting while a fetch is under way use its result: it is newer than they are.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from healthway.domain.messages import ContentType
from healthway.errors import InvalidRequest

DEFAULT_MAX_AGE, MAX_MAX_AGE = 300.0, 3600.0
MAX_BYTES = 64 * 1024
MAX_REDIRECTS = 3
TIMEOUT = httpx.Timeout(3.0)
_DIRECTIVE = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*"?([^",]*)"?)?\s*')


class JwksUnavailable(Exception):
    """The JWK Set could not be fetched or is not a JWK Set (message safe to show)."""


class JwksFetcher(Protocol):
    async def fetch(self, url: str, *, kid: str) -> dict[str, Any]:
        """The JWK Set at ``url``; a cached copy when fresh and holding ``kid``. Raises JwksUnavailable."""
        ...


def check_url(url: str) -> str:
    """A URL acceptable for registration: http(s), a host, no credentials, bounded length (no DNS here)."""
    parts = urlsplit(url)
    if len(url) > 2000 or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("jwks_url must be an http:// or https:// URL")
    if parts.username or parts.password or parts.fragment:
        raise InvalidRequest("jwks_url must not carry credentials or a fragment")
    return url


def address_allowed(address: str, *, allow_private: bool) -> bool:
    """Global addresses always; loopback and private ones only when allowed; link-local (cloud metadata at
    169.254.169.254), multicast, reserved and unspecified never."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return False
    if ip.is_loopback or ip.is_private:
        return allow_private
    return ip.is_global and not ip.is_reserved


def cache_seconds(cache_control: str | None) -> float:
    """How long a set may be reused under this ``Cache-Control`` (RFC 9111 §5.2.2): 0 for ``no-store``,
    ``no-cache`` or ``max-age=0``, else ``max-age`` capped at 1 h; 5 min without a max-age; 0 when unreadable."""
    if cache_control is None or not cache_control.strip():
        return DEFAULT_MAX_AGE
    directives: dict[str, str] = {}
    for part in cache_control.split(","):  # directives hold no quoted commas that matter here
        match = _DIRECTIVE.fullmatch(part)
        if match is None:
            return 0.0  # an unreadable header allows nothing we could rely on
        directives.setdefault(match[1].lower(), match[2] or "")
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    if "max-age" not in directives:
        return DEFAULT_MAX_AGE
    max_age = directives["max-age"]
    return min(float(max_age), MAX_MAX_AGE) if max_age.isdigit() else 0.0


@dataclass
class _Entry:
    jwks: dict[str, Any]
    expires_at: float
    fetched_at: float


@dataclass(frozen=True)
class _Answer:
    location: str | None  # a redirect's target
    jwks: dict[str, Any] | None
    max_age: float


def _kids(jwks: dict[str, Any]) -> set[str]:
    return {str(k.get("kid")) for k in jwks.get("keys", []) if isinstance(k, dict)}


class HttpJwksFetcher:
    def __init__(
        self,
        *,
        allow_private: bool,
        monotonic: Callable[[], float] = time.monotonic,
        refetch_interval: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._now = monotonic
        self._refetch_interval = refetch_interval
        self._cache: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._transport = transport

    async def fetch(self, url: str, *, kid: str) -> dict[str, Any]:
        entry, arrived = self._cache.get(url), self._now()
        if entry is not None and self._usable(entry, kid):
            return entry.jwks
        async with self._locks.setdefault(url, asyncio.Lock()):  # one fetch per URL at a time
            entry = self._cache.get(url)
            if entry is not None and (entry.fetched_at > arrived or self._usable(entry, kid)):
                return entry.jwks  # fetched while this request waited, or fresh
            jwks, max_age = await self._download(url)
            now = self._now()
            self._cache[url] = _Entry(jwks, now + max_age, now)
            return jwks

    def _usable(self, entry: _Entry, kid: str) -> bool:
        """Holding the kid and still fresh; or lacking it and fetched too recently to fetch again (then the kid is
        simply unknown: refused against this set, whatever its age)."""
        now = self._now()
        if kid in _kids(entry.jwks):
            return now < entry.expires_at
        return now - entry.fetched_at < self._refetch_interval

    async def _download(self, url: str) -> tuple[dict[str, Any], float]:
        # A client per download: fetches are rare (cached for minutes) and nothing stays open between them.
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, transport=self._transport) as client:
            return await self._follow(client, url)

    async def _follow(self, client: httpx.AsyncClient, url: str) -> tuple[dict[str, Any], float]:
        origin = urlsplit(url)
        for _ in range(MAX_REDIRECTS + 1):
            answer = await self._get(client, url)
            if answer.location is None:
                assert answer.jwks is not None
                return answer.jwks, answer.max_age
            target = urlsplit(str(httpx.URL(url).join(answer.location)))
            if (target.scheme, target.hostname, target.port) != (origin.scheme, origin.hostname, origin.port):
                raise JwksUnavailable("the JWKS URL redirects to another host")
            url = urlunsplit(target)
        raise JwksUnavailable("the JWKS URL redirects too often")

    async def _resolve(self, host: str, port: int) -> str:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise JwksUnavailable("the JWKS URL's host does not resolve") from None
        addresses = [str(info[4][0]) for info in infos]
        if not addresses or not all(address_allowed(a, allow_private=self._allow_private) for a in addresses):
            raise JwksUnavailable("the JWKS URL points at an address that is not allowed")
        return addresses[0]

    async def _get(self, client: httpx.AsyncClient, url: str) -> _Answer:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise JwksUnavailable("the JWKS URL is not http(s)")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await self._resolve(parts.hostname, port)
        # Connect to the address just checked (a second DNS answer cannot swap it); keep the Host and TLS name.
        pinned = httpx.URL(url).copy_with(host=address)
        headers = {"Accept": ContentType.JSON, "Host": parts.netloc}
        request = client.build_request("GET", pinned, headers=headers, extensions={"sni_hostname": parts.hostname})
        try:
            response = await client.send(request, stream=True)
            try:
                if response.is_redirect:
                    return _Answer(response.headers.get("location", ""), None, 0)
                if response.status_code != 200:
                    raise JwksUnavailable(f"the JWKS URL answered HTTP {response.status_code}")
                body = await self._read_capped(response)
            finally:
                await response.aclose()
        except httpx.HTTPError:
            raise JwksUnavailable("the JWKS URL could not be fetched") from None
        return _Answer(None, self._parse(body), cache_seconds(response.headers.get("cache-control")))

    @staticmethod
    async def _read_capped(response: httpx.Response) -> bytes:
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():  # decoded bytes: the cap also bounds decompression
            size += len(chunk)
            if size > MAX_BYTES:
                raise JwksUnavailable("the JWK Set is too large")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _parse(body: bytes) -> dict[str, Any]:
        try:
            jwks = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise JwksUnavailable("the JWKS URL did not answer JSON") from None
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise JwksUnavailable("the JWKS URL did not answer a JWK Set")
        return jwks
