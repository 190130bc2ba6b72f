"""Brute-force protection on /v2/auth/token: failed client authentications are counted per (claimed client,
address) and per address; a valid assertion is never refused, and the throttled failures recover when their
window passes."""

from __future__ import annotations

from collections.abc import Iterator

import limits
import pytest

from healthway.services import ratelimit
from healthway.storage.db import Database
from healthway.testing import assertion_claims, make_key_pair, settable_rate_limiter
from tests.integration.test_oauth_token import AUD, Harness, make_harness


@pytest.fixture
def h(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setattr(ratelimit, "FAILURES_PER_KEY", limits.parse("3/2 seconds"))
    yield from make_harness(db)


def test_failures_are_throttled_per_client_then_recover(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "FAILURES_PER_KEY", limits.parse("3/2 seconds"))
    limiter, windows = settable_rate_limiter()  # the window passes when told, not after a sleep
    for h in make_harness(db, rate_limiter=limiter):
        stranger = make_key_pair("RS384")  # signs with a key the client does not have
        for _ in range(3):
            assert h.token(h.assertion(pair=stranger)).status_code == 401
        throttled = h.token(h.assertion(pair=stranger))
        assert throttled.status_code == 429
        assert throttled.json()["error"] == "rate_limited"
        assert int(throttled.headers["retry-after"]) >= 1 and throttled.headers["x-ratelimit-limit"] == "3"
        assert throttled.headers["cache-control"] == "no-store"
        other_pair = make_key_pair("RS384")
        other_client = h.add_key(other_pair)
        other_claims = assertion_claims(other_client, AUD, now=h.clock().timestamp())
        assert h.token(other_pair.sign(other_claims)).status_code == 200  # another client is not affected
        assert h.token().status_code == 200  # nor is a valid assertion of the throttled one
        windows.advance(int(throttled.headers["retry-after"]))
        assert h.token(h.assertion(pair=stranger)).status_code == 401


def test_successes_are_not_counted(h: Harness) -> None:
    assert all(h.token().status_code == 200 for _ in range(6))
