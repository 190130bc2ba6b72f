"""Recording attempts: a worker reports what each send did, and each delivery moves on (DESIGN §2's retries).

The delivery's next state comes from the domain's table (``delivery_states.after_attempt``); this module only
reads and writes the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session

from healthway.domain import retry
from healthway.domain.delivery_states import AttemptOutcome, DeliveryStatus, after_attempt, may_move
from healthway.domain.retry import AttemptResult
from healthway.storage.models import Delivery

log = structlog.get_logger("healthway.delivery")
TABLES = Delivery.metadata.tables  # Core tables: these statements need no unit-of-work bookkeeping


@dataclass(frozen=True)
class RetryPolicy:
    """When to stop retrying; the schedule is DESIGN §2's unless a test shortens it."""

    max_age: timedelta
    schedule: Sequence[float] = retry.SCHEDULE


@dataclass(frozen=True)
class Sent:
    """One attempt as a worker made it."""

    delivery_id: str
    result: AttemptResult
    started_at: datetime
    finished_at: datetime


def record(session: Session, attempts: Sequence[Sent], *, policy: RetryPolicy) -> set[str]:
    """Store the attempts and move each delivery on: finished, or rescheduled per the retry policy (its lease is
    dropped either way). Returns the IDs of the logs that have a finished delivery now.

    Three Core statements however many attempts: a worker records a whole lane at once.
    """
    table = TABLES["deliveries"]
    ids = [a.delivery_id for a in attempts]
    current = session.execute(
        sa.select(
            table.c.id,
            table.c.log_id,
            table.c.destination_id,
            table.c.status,
            table.c.attempt_count,
            table.c.created_at,
        ).where(table.c.id.in_(ids))
    )
    known = {row.id: row for row in current}  # a delivery may be gone: its destination was deleted meanwhile
    new_attempts, changes, finished = [], [], set()
    for attempt in attempts:
        if (row := known.get(attempt.delivery_id)) is None:
            continue
        number = row.attempt_count + 1
        status, next_attempt_at = _next_state(attempt, number, row.created_at, policy)
        if not may_move(row.status, status):  # finished already: a worker whose lease ran out reports late
            log.warning("attempt of a finished delivery not recorded", delivery_id=row.id, status=row.status)
            continue
        new_attempts.append(_attempt_row(attempt, number))
        changes.append({"b_id": row.id, "status": status.value, "count": number, "next": next_attempt_at})
        if status is not DeliveryStatus.PENDING:
            finished.add(row.log_id)
        _tell(attempt.result, row.destination_id, row.log_id, number, status)
    if changes:
        session.execute(sa.insert(TABLES["attempts"]), new_attempts)
        session.execute(_MOVE_ON, changes)
    return finished


def _tell(result: AttemptResult, destination_id: str, log_id: str, number: int, status: DeliveryStatus) -> None:
    """Failures reach the server log, not only /metrics: a warning per failed attempt, an error on giving up.
    Identifiers and the sender's short reason only, never payload."""
    if result.outcome in (AttemptOutcome.DELIVERED, AttemptOutcome.FILTERED):
        return
    fields = {"destination_id": destination_id, "log_id": log_id, "attempt": number, "reason": result.detail}
    if status is DeliveryStatus.FAILED:
        log.error("delivery failed for good", outcome=result.outcome.value, **fields)
    else:
        log.warning("delivery attempt failed; will retry", **fields)


_MOVE_ON = (
    sa.update(TABLES["deliveries"])
    .where(TABLES["deliveries"].c.id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("status"),
        attempt_count=sa.bindparam("count"),
        next_attempt_at=sa.bindparam("next"),
        locked_until=None,
    )
)


def _next_state(
    attempt: Sent, number: int, created_at: datetime, policy: RetryPolicy
) -> tuple[DeliveryStatus, datetime | None]:
    """(status, next attempt time) after attempt ``number``."""
    next_attempt_at = None
    if attempt.result.outcome is AttemptOutcome.FAILED:
        next_attempt_at = retry.next_attempt_at(
            failures=number,
            now=attempt.finished_at,
            created_at=created_at,
            max_age=policy.max_age,
            schedule=policy.schedule,
        )
    return after_attempt(attempt.result.outcome, retry_later=next_attempt_at is not None), next_attempt_at


def _attempt_row(attempt: Sent, number: int) -> dict[str, Any]:
    result = attempt.result
    return {
        "delivery_id": attempt.delivery_id,
        "number": number,
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
        "outcome": result.outcome.value,
        "response_code": result.response_code,
        "detail": result.detail[: retry.MAX_DETAIL] or None,
    }
