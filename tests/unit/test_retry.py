"""DESIGN §2's retry schedule and give-up rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from healthway.domain.retry import next_attempt_at, retry_delay

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(hours=24)


def test_schedule_is_immediately_then_10_10_20_30_50_80_120_then_every_120() -> None:
    delays = [retry_delay(n).total_seconds() for n in range(1, 12)]
    assert delays == [0, 10, 10, 20, 30, 50, 80, 120, 120, 120, 120]


def test_next_attempt_follows_the_schedule_from_the_failure_time() -> None:
    now = T0 + timedelta(minutes=5)
    assert next_attempt_at(failures=1, now=now, created_at=T0, max_age=DAY) == now
    assert next_attempt_at(failures=4, now=now, created_at=T0, max_age=DAY) == now + timedelta(seconds=20)


def test_gives_up_at_max_age_and_never_schedules_past_it() -> None:
    max_age = timedelta(seconds=100)
    assert next_attempt_at(failures=9, now=T0 + timedelta(seconds=90), created_at=T0, max_age=max_age) == T0 + max_age
    assert next_attempt_at(failures=9, now=T0 + max_age, created_at=T0, max_age=max_age) is None
    assert next_attempt_at(failures=2, now=T0 + timedelta(days=2), created_at=T0, max_age=DAY) is None
