"""Rate limits with the limits library: in memory by default, in Redis when HEALTHWAY_REDIS_URL is set."""

from __future__ import annotations

import math
import time
from typing import NoReturn

from limits import RateLimitItem, parse
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


class RateLimiter:
    def __init__(self, redis_url: str | None = None) -> None:
        uri = f"async+{redis_url}" if redis_url else "async+memory://"
        self._limiter = SlidingWindowCounterRateLimiter(storage_from_string(uri))

    async def hit(self, item: RateLimitItem | None, *key: str, what: str = "requests") -> None:
        """Count one hit against ``key``; raise RateLimited (with the numbers for the 429 headers) when over."""
        if item is not None and not await self._limiter.hit(item, *key):
            await self.refuse(item, *key, what=what)

    async def refuse(self, item: RateLimitItem, *key: str, what: str) -> NoReturn:
        """Raise RateLimited with ``key``'s current window: when to retry, for the 429 headers."""
        stats = await self._limiter.get_window_stats(item, *key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"too many {what}; retry in {retry_after} s",
            limit=item.amount,
            remaining=stats.remaining,
            reset_at=math.ceil(stats.reset_time),
            retry_after=retry_after,
        )

    async def count(self, item: RateLimitItem, *key: str) -> None:
        """Count one hit without refusing anything (failures are counted after the fact)."""
        await self._limiter.hit(item, *key)

    async def test(self, item: RateLimitItem, *key: str) -> bool:
        """True while ``key`` has hits left (without counting one)."""
        return await self._limiter.test(item, *key)


# Credential failures allowed before the credential endpoints answer 429. Windows are bounded, so a legitimate
# caller is never locked out for long, and at most 100 failures per hour are possible per key (ASVS 2.2.1).
FAILURES_PER_KEY = parse("20/minute")
FAILURES_PER_KEY_HOURLY = parse("100/hour")
FAILURES_PER_ADDRESS = parse("200/minute")


class BruteForceGuard:
    """Counts failed credential checks per key and per client address; successes cost nothing."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    def _checks(self, key: str, address: str) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        return [
            (FAILURES_PER_KEY, ("fail-key", key)),
            (FAILURES_PER_KEY_HOURLY, ("fail-key", key)),
            (FAILURES_PER_ADDRESS, ("fail-address", address)),
        ]

    async def check(self, *, key: str, address: str) -> None:
        """Raise RateLimited while either the key or the address has used up its failures."""
        for item, ident in self._checks(key, address):
            if not await self._limiter.test(item, *ident):
                await self._limiter.refuse(item, *ident, what="failed attempts")

    async def failed(self, *, key: str, address: str) -> None:
        for item, ident in self._checks(key, address):
            await self._limiter.count(item, *ident)
