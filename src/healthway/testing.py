"""Fakes shipped for tests: the HTTP app with its node's parts running, a settable clock, a recording sender,
client key pairs, a JWKS fetcher, a DNS resolver and cheap password hashing."""

from __future__ import annotations

import asyncio
import secrets
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from argon2 import PasswordHasher
from fastapi import FastAPI
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey
from limits import RateLimitItem, WindowStats

from healthway.delivery.senders import Message, Target
from healthway.domain.delivery_states import AttemptOutcome
from healthway.domain.outbound import OutboundPolicy
from healthway.domain.passwords import Passwords
from healthway.domain.retry import AttemptResult
from healthway.net.outbound import OutboundGuard, SystemResolver
from healthway.runtime import Healthway, running
from healthway.services.jwks_fetcher import JwksUnavailable
from healthway.services.ratelimit import RateLimiter
from healthway.transports.http.app import create_app

CHEAP_PASSWORDS = Passwords(PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1))
"""argon2id at its cheapest (about a hundredth of the recommended work): for ``build(passwords=...)`` and the
CLI's ``Parts``. Its hashes verify with the real parameters too (a hash carries its own), only faster."""


def http_app(hw: Healthway) -> FastAPI:
    """``hw``'s HTTP app whose lifespan runs ``hw``'s parts, as ``TestClient`` needs (in production ``server.run``
    runs the parts and uvicorn is one of them)."""
    app = create_app(hw)
    app.router.lifespan_context = lambda _app: running(hw.parts)
    return app


@dataclass
class FakeClock:
    """A clock that moves only when told: ``clock()`` reads it, ``advance`` moves it."""

    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


DELIVERED = AttemptResult(AttemptOutcome.DELIVERED, "200", "HTTP 200")


@dataclass
class RecordingSender:
    """Records every message it is given and answers with ``respond(target, message)`` (delivered by default).

    ``fail_next(n)`` makes the next ``n`` sends fail with a retryable error; ``delay`` slows every send down.
    """

    respond: Callable[[Target, Message], AttemptResult] = lambda _t, _m: DELIVERED
    delay: float = 0.0
    sent: list[tuple[Target, Message]] = field(default_factory=list)
    _failures_left: int = 0

    def fail_next(self, n: int) -> None:
        self._failures_left = n

    async def send(self, target: Target, message: Message) -> AttemptResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.sent.append((target, message))
        if self._failures_left > 0:
            self._failures_left -= 1
            return AttemptResult.retry("connection refused (fake)", "503")
        return self.respond(target, message)

    async def aclose(self) -> None:
        return None

    def payloads(self, destination_id: str | None = None) -> list[bytes]:
        return [m.payload for t, m in self.sent if destination_id is None or t.id == destination_id]


@dataclass
class FakeWindows:
    """Rate-limit windows (``ratelimit.Windows``) on a settable clock of epoch seconds, e.g.
    ``FakeMonotonic(time.time())``: a key's window opens at its first hit and holds ``item.amount`` hits for
    ``item.get_expiry()`` seconds (fixed windows: simpler than the library's sliding ones, enough for a test)."""

    clock: Callable[[], float]
    _windows: dict[str, tuple[float, int]] = field(default_factory=dict)  # key → (opened at, hits)

    def _window(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> tuple[str, float, int]:
        key, now = item.key_for(*identifiers), self.clock()
        opened, hits = self._windows.get(key, (now, 0))
        return (key, now, 0) if now >= opened + item.get_expiry() else (key, opened, hits)

    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        key, opened, hits = self._window(item, identifiers)
        self._windows[key] = (opened, min(hits + 1, item.amount))
        return hits < item.amount

    async def test(self, item: RateLimitItem, *identifiers: str) -> bool:
        return self._window(item, identifiers)[2] < item.amount

    async def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        _, opened, hits = self._window(item, identifiers)
        return WindowStats(opened + item.get_expiry(), item.amount - hits)


def settable_rate_limiter() -> tuple[RateLimiter, FakeMonotonic]:
    """A RateLimiter on ``FakeWindows`` and the clock they keep (starting at the wall clock's now, so reset times
    still read as real epoch seconds): ``clock.advance(seconds)`` ends a window without waiting for it."""
    clock = FakeMonotonic(time.time())
    return RateLimiter(windows=FakeWindows(clock), clock=clock), clock


# -- OAuth keys: key pairs, assertions and a fake JWKS fetcher ------------------------------------------------


@dataclass
class FakeMonotonic:
    """A monotonic clock (seconds) that moves only when told."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class KeyPair:
    """A client's key pair: ``public_jwks`` to register, ``sign`` to make assertions with the private key."""

    alg: str
    kid: str
    private: RSAKey | ECKey | OKPKey

    @property
    def public_jwk(self) -> dict[str, Any]:
        return {**self.private.as_dict(private=False), "kid": self.kid}

    @property
    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}

    def sign(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        """A compact JWS over ``claims``; ``header`` overrides the default ``{"alg", "kid", "typ": "JWT"}``."""
        full = {"alg": self.alg, "kid": self.kid, "typ": "JWT", **(header or {})}
        with warnings.catch_warnings():  # EdDSA's name is deprecated by RFC 9864; keys still use it
            warnings.simplefilter("ignore", SecurityWarning)
            return jws.serialize_compact(full, orjson.dumps(claims), self.private, algorithms=[full["alg"]])


def make_key_pair(alg: str = "RS384", kid: str | None = None) -> KeyPair:
    """RSA-2048 for RS*/PS*, P-384 or P-256 for ES384/ES256, Ed25519 for EdDSA."""
    private: RSAKey | ECKey | OKPKey
    if alg.startswith(("RS", "PS")):
        private = RSAKey.generate_key(2048, private=True)
    elif alg in ("ES384", "ES256"):
        private = ECKey.generate_key("P-384" if alg == "ES384" else "P-256", private=True)
    else:
        private = OKPKey.generate_key("Ed25519", private=True)
    return KeyPair(alg, kid or private.thumbprint(), private)


def assertion_claims(
    client_id: str, audience: str, *, now: float, lifetime: float = 120, **extra: Any
) -> dict[str, Any]:
    """The claims of a valid client assertion (a fresh jti each call); ``extra`` overrides or adds claims."""
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "exp": int(now + lifetime), "iat": int(now)}
    return {**claims, "jti": secrets.token_urlsafe(16), **extra}


@dataclass
class FakeJwksFetcher:
    """Serves JWK Sets from ``sets`` (URL → set) without a network; records every request."""

    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    async def fetch(self, url: str, *, kid: str) -> dict[str, Any]:
        self.requests.append((url, kid))
        if url not in self.sets:
            raise JwksUnavailable("the JWKS URL could not be fetched")
        return self.sets[url]


# -- outbound connections: a resolver the test controls ---------------------------------------------------------


@dataclass
class FakeResolver:
    """Answers DNS questions from ``answers`` (host name → addresses) without a network; an unknown name does not
    resolve. ``answers`` may be changed between calls (a name that starts pointing elsewhere); every question is
    recorded in ``asked``."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def resolve(self, host: str, port: int) -> list[str]:
        name = host.rstrip(".").lower()
        self.asked.append(name)
        if name not in self.answers:
            raise OSError(f"{name} does not resolve (fake)")
        return list(self.answers[name])


LOOPBACK_POLICY = OutboundPolicy(allow_loopback=True, allow_http=True)


def loopback_guard(resolver: FakeResolver | None = None) -> OutboundGuard:
    """The guard of a gateway whose operator allows loopback and plain-HTTP destinations (what tests with
    receivers on 127.0.0.1 need)."""
    return OutboundGuard(LOOPBACK_POLICY, resolver or SystemResolver())
