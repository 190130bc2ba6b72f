"""Audit events for refused client assertions, aggregated so that a flood cannot fill the audit table.

Refusals are counted per bucket (the client when the assertion named a known one, else one shared bucket for
unknown clients). The first refusal of a bucket is written at once; later ones are only counted until
``window`` has passed, and the next written event carries the count. So an attacker causes at most one row per
known client and one for everything else per window. The assertion itself is never recorded, only our own
fixed description of why it was refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

UNKNOWN_CLIENT = "<unknown>"
MAX_BUCKETS = 10_000


@dataclass
class _Bucket:
    written_at: float
    suppressed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RejectionEvent:
    """What to write: the ``assertion:reject`` audit event's subject and summary."""

    client_id: str | None
    organization_id: str | None
    summary: dict[str, Any]


class RejectionAggregator:
    def __init__(self, *, window: float = 60.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._now = monotonic
        self._buckets: dict[str, _Bucket] = {}

    def note(self, *, client_id: str | None, organization_id: str | None, reason: str) -> RejectionEvent | None:
        """Count one refusal; returns the event to write now, or None when it is folded into a later one."""
        name = client_id or UNKNOWN_CLIENT
        now = self._now()
        bucket = self._buckets.get(name)
        if bucket is not None and now - bucket.written_at < self._window:
            bucket.suppressed += 1
            if len(bucket.reasons) < 20 or reason in bucket.reasons:
                bucket.reasons[reason] = bucket.reasons.get(reason, 0) + 1
            return None
        if len(self._buckets) >= MAX_BUCKETS:
            self._buckets.clear()  # bounded memory; at worst a few extra rows
        self._buckets[name] = _Bucket(written_at=now)
        summary: dict[str, Any] = {"reason": reason, "refusals": 1 + (bucket.suppressed if bucket else 0)}
        if bucket is not None and bucket.reasons:
            summary["earlier_reasons"] = bucket.reasons
        return RejectionEvent(client_id, organization_id, summary)
