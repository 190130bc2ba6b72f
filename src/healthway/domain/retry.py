"""The retry schedule of DESIGN §2: immediately, then +10 s, +10 s, +20 s, +30 s, +50 s, +80 s, +120 s, then
every 120 s, until the delivery is older than ``HEALTHWAY_DELIVERY_MAX_AGE``; then it is ``failed``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from healthway.domain.delivery_states import AttemptOutcome

# Delay before the retry that follows the n-th failed attempt (index n-1); the last one repeats.
SCHEDULE: tuple[float, ...] = (0, 10, 10, 20, 30, 50, 80, 120)
MAX_DETAIL = 500


def retry_delay(failures: int, schedule: Sequence[float] = SCHEDULE) -> timedelta:
    """How long to wait after the ``failures``-th consecutive failed attempt (1-based)."""
    assert failures >= 1
    return timedelta(seconds=schedule[min(failures, len(schedule)) - 1])


def next_attempt_at(
    *, failures: int, now: datetime, created_at: datetime, max_age: timedelta, schedule: Sequence[float] = SCHEDULE
) -> datetime | None:
    """When to try again after a failure, or None to give up (the delivery has outlived ``max_age``).

    A retry that would fall after the deadline is moved onto it, so the last try happens at max age.
    """
    deadline = created_at + max_age
    if now >= deadline:
        return None
    return min(now + retry_delay(failures, schedule), deadline)


@dataclass(frozen=True)
class AttemptResult:
    """What a sender reports about one attempt. ``detail`` is short and never holds secrets or payload."""

    outcome: AttemptOutcome
    response_code: str | None = None  # HTTP status, MSA-1 acknowledgment code, ...
    detail: str = ""

    @classmethod
    def retry(cls, detail: str, response_code: str | None = None) -> AttemptResult:
        return cls(AttemptOutcome.FAILED, response_code, detail[:MAX_DETAIL])
