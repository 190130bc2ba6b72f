"""Rate limits with the limits library: in memory by default, in Redis when HEALTHWAY_REDIS_URL is set.

The library reads the wall clock itself, so the time seam is the whole window store: ``RateLimiter`` takes any
``Windows`` (a limits strategy, or ``testing.FakeWindows`` on a settable clock) and the clock it answers with.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NoReturn, Protocol

from limits import RateLimitItem, WindowStats, parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from healthway.errors import ConfigurationError, RateLimited


def parse_limit(spec: str, setting: str) -> RateLimitItem | None:
    """``10000/5 minutes`` → an item; ``none`` → no limit."""
    if spec.strip().lower() == "none":
        return None
    try:
        return parse(spec)
    except ValueError:
        raise ConfigurationError(f"invalid {setting}: {spec!r} (e.g. '10000/5 minutes' or 'none')") from None


class Windows(Protocol):
    """What ``RateLimiter`` uses of a limits async strategy: count a hit, test, read a key's window."""

    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool: ...

    async def test(self, item: RateLimitItem, *identifiers: str) -> bool: ...

    async def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats: ...


class RateLimiter:
    def __init__(
        self, redis_url: str | None = None, *, windows: Windows | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        """Sliding windows in Redis (``redis_url``) or in memory, unless ``windows`` is given; ``clock`` (epoch
        seconds) must be the one those windows keep time with."""
        uri = f"async+{redis_url}" if redis_url else "async+memory://"
        self._limiter: Windows = windows or SlidingWindowCounterRateLimiter(storage_from_string(uri))
        self._clock = clock

    async def hit(self, item: RateLimitItem | None, *key: str, what: str = "requests") -> None:
        """Count one hit against ``key``; raise RateLimited (with the numbers for the 429 headers) when over."""
        if item is not None and not await self._limiter.hit(item, *key):
            await self.refuse(item, *key, what=what)

    async def refuse(self, item: RateLimitItem, *key: str, what: str) -> NoReturn:
        """Raise RateLimited with ``key``'s current window: when to retry, for the 429 headers."""
        stats = await self._limiter.get_window_stats(item, *key)
        retry_after = max(1, math.ceil(stats.reset_time - self._clock()))
        raise RateLimited(
            f"too many {what}; retry in {retry_after} s",
            limit=item.amount,
            remaining=stats.remaining,
            reset_at=math.ceil(stats.reset_time),
            retry_after=retry_after,
        )

    async def count(self, item: RateLimitItem, *key: str) -> bool:
        """Count one hit without refusing anything; False when that hit went over the limit."""
        return await self._limiter.hit(item, *key)

    async def test(self, item: RateLimitItem, *key: str) -> bool:
        """True while ``key`` has hits left (without counting one)."""
        return await self._limiter.test(item, *key)


# Credential failures allowed before a failure is answered 429. Windows are bounded, so a legitimate caller is
# never locked out for long, and at most 100 failures per hour are possible per key and address (ASVS 2.2.1).
FAILURES_PER_KEY = parse("20/minute")
FAILURES_PER_KEY_HOURLY = parse("100/hour")
FAILURES_PER_ADDRESS = parse("200/minute")


class BruteForceGuard:
    """Counts failed credential checks per (claimed key, client address) and per client address.

    The key is what a request *claims* (an unverified ``client_id``/``iss``, a legacy ``apiKey``): anyone can
    claim anyone's, so the count is never per key alone, and only failures are ever refused. A request whose
    credential verifies is answered normally whatever the counters say, even from an address that failed a
    lot (it may be a NAT shared with an attacker); guessing a 256-bit secret or forging a signature is not
    helped by that. A failure over a limit is answered 429 (with when to retry) instead of 401.
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    def _checks(self, key: str, address: str) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        return [
            (FAILURES_PER_KEY, ("fail-key", key, address)),
            (FAILURES_PER_KEY_HOURLY, ("fail-key", key, address)),
            (FAILURES_PER_ADDRESS, ("fail-address", address)),
        ]

    async def failed(self, *, key: str, address: str) -> None:
        """Count one failure; raise RateLimited when this key from this address, or this address, is over."""
        over = [
            (item, ident) for item, ident in self._checks(key, address) if not await self._limiter.count(item, *ident)
        ]
        if over:
            item, ident = over[0]
            await self._limiter.refuse(item, *ident, what="failed attempts")
