"""Deliveries: routing a new log to its subscriptions, recording attempts, and waking the workers.

``route`` runs inside the intake transaction, so a log and its deliveries commit together (durable before
acknowledged, nothing routed twice). Workers then claim deliveries (storage.queue), send them (delivery/) and
report each attempt here with ``record``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session

from healthway.domain import retry
from healthway.domain.retry import AttemptResult, Outcome
from healthway.domain.routing import Filters, MessageFacts, Ordering, matches
from healthway.errors import InvalidRequest
from healthway.storage.models import Attempt, Delivery, Destination, Log, Subscription, new_id

log = structlog.get_logger("healthway.delivery")

PG_CHANNEL = "healthway_deliveries"  # LISTEN/NOTIFY channel that wakes the workers of every node
PENDING, DELIVERED, FAILED, FILTERED = "pending", "delivered", "failed", "filtered"
_QUEUED = "healthway.queued"  # session.info key: this transaction queued deliveries
TABLES = Delivery.metadata.tables  # Core tables: these statements need no unit-of-work bookkeeping
_FINAL_STATUS = {Outcome.DELIVERED: DELIVERED, Outcome.REJECTED: FAILED, Outcome.FILTERED: FILTERED}


@runtime_checkable
class Wakeable(Protocol):
    def wake(self) -> None:
        """Look for due deliveries now. Safe to call from any thread."""


def notify(listeners: Iterable[object]) -> None:
    """Wake this process's delivery workers; call it after the intake transaction commits.

    Other nodes hear of new deliveries through PostgreSQL NOTIFY (sent by ``route`` at commit) or their poll.
    """
    for listener in listeners:
        if isinstance(listener, Wakeable):
            listener.wake()


def filters_of(subscription: Subscription) -> Filters:
    return Filters(subscription.data_models, subscription.event_types, subscription.message_types)


def _subscriptions(session: Session, source_id: str) -> list[Subscription]:
    """The source's enabled subscriptions, read once per transaction: a group-commit batch routes many logs of
    the same few sources."""
    cache: dict[str, list[Subscription]] = session.info.setdefault("healthway.subscriptions", {})
    if source_id not in cache:
        query = (
            sa.select(Subscription)
            .join(Destination, Destination.id == Subscription.destination_id)
            .where(Subscription.source_id == source_id, Subscription.enabled, Destination.enabled)
            .order_by(Subscription.id)  # one lock order for the sequence counters below: no deadlocks
        )
        cache[source_id] = list(session.scalars(query))
    return cache[source_id]


def _take_sequences(session: Session, subscription_ids: list[str]) -> dict[str, int]:
    """Take the next FIFO sequence number of each subscription, in one statement; the row locks are held until the
    intake commits, so a lane's order is its commit order. PostgreSQL locks the rows in ID order first (the
    ``FOR UPDATE`` subquery), so intakes on several nodes never deadlock on them."""
    if not subscription_ids:
        return {}
    table = TABLES["subscriptions"]
    in_order = sa.select(table.c.id).where(table.c.id.in_(subscription_ids)).order_by(table.c.id).with_for_update()
    bumped = (
        sa.update(table)
        .where(table.c.id.in_(in_order.scalar_subquery()))
        .values(next_sequence=table.c.next_sequence + 1)
        .returning(table.c.id, table.c.next_sequence)
    )
    return {row[0]: int(row[1]) for row in session.execute(bumped)}


def _is_fifo(subscription: Subscription | None) -> bool:
    return subscription is not None and subscription.ordering == Ordering.FIFO.value


def route(session: Session, *, log: Log, destination_ids: list[str] | None) -> int:
    """Queue one pending delivery per enabled subscription of ``log.source_id`` whose filters match, due at once;
    returns how many.

    ``destination_ids`` (``Meta.Destinations``) narrows the set; naming a destination the source is not
    subscribed to raises InvalidRequest (400). Runs in the caller's transaction, after ``log`` is flushed.
    """
    subscriptions = _subscriptions(session, log.source_id)
    if destination_ids is not None:
        subscribed = {s.destination_id for s in subscriptions}
        if unknown := [d for d in destination_ids if d not in subscribed]:
            raise InvalidRequest(f"this source is not subscribed to destination {unknown[0][:64]!r}")
        subscriptions = [s for s in subscriptions if s.destination_id in set(destination_ids)]
    facts = MessageFacts(log.data_model, log.event_type, log.message_type)
    matched = [s for s in subscriptions if matches(filters_of(s), facts)]
    if not matched:
        return 0
    sequences = _take_sequences(session, [s.id for s in matched if _is_fifo(s)])
    rows = [_pending(log, s.id, s.destination_id, sequences.get(s.id, 0), log.received_at) for s in matched]
    session.execute(sa.insert(TABLES["deliveries"]), rows)
    announce(session)
    return len(rows)


def _pending(
    log: Log, subscription_id: str | None, destination_id: str | None, sequence: int, now: datetime
) -> dict[str, Any]:
    """The row of a new pending delivery, due at ``now``."""
    return {
        "id": new_id(),
        "log_id": log.id,
        "subscription_id": subscription_id,
        "destination_id": destination_id,
        "sequence": sequence,
        "status": PENDING,
        "next_attempt_at": now,
        "created_at": now,
        "attempt_count": 0,
    }


def resume(session: Session, destination_id: str, *, now: datetime) -> None:
    """Make a destination's pending deliveries due now (it was switched back on): they do not sit out the rest of
    a retry interval they got while it was off."""
    table = TABLES["deliveries"]
    session.execute(
        sa.update(table)
        .where(table.c.destination_id == destination_id, table.c.status == PENDING, table.c.next_attempt_at > now)
        .values(next_attempt_at=now)
    )
    announce(session)


def queued(session: Session) -> bool:
    """Whether this (committed) session queued deliveries."""
    return bool(session.info.get(_QUEUED))


def announce(session: Session) -> None:
    """Tell the workers of every node that deliveries are waiting (PostgreSQL NOTIFY, sent only on commit); this
    node's own workers are woken after the commit when ``queued(session)`` says so."""
    session.info[_QUEUED] = True
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_notify(PG_CHANNEL, "")))


def new_delivery(
    session: Session, *, log: Log, subscription: Subscription | None, now: datetime, destination_id: str | None = None
) -> Delivery:
    """A pending delivery of ``log``, at the end of its subscription's FIFO lane (replays use this)."""
    sequence = (
        _take_sequences(session, [subscription.id])[subscription.id] if subscription and _is_fifo(subscription) else 0
    )
    target = subscription.destination_id if subscription else destination_id
    delivery = Delivery(**_pending(log, subscription.id if subscription else None, target, sequence, now))
    session.add(delivery)
    return delivery


# -- recording attempts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
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


def record(session: Session, attempts: Sequence[Sent], *, policy: Policy) -> set[str]:
    """Store the attempts and move each delivery on: finished, or rescheduled per the retry policy (its lease is
    dropped either way). Returns the IDs of the logs that have a finished delivery now.

    Three Core statements however many attempts: a worker records a whole lane at once.
    """
    table = TABLES["deliveries"]
    ids = [a.delivery_id for a in attempts]
    current = session.execute(
        sa.select(table.c.id, table.c.log_id, table.c.destination_id, table.c.attempt_count, table.c.created_at).where(
            table.c.id.in_(ids)
        )
    )
    known = {row.id: row for row in current}  # a delivery may be gone: its destination was deleted meanwhile
    new_attempts, changes, finished = [], [], set()
    for attempt in attempts:
        if (row := known.get(attempt.delivery_id)) is None:
            continue
        number = row.attempt_count + 1
        status, next_attempt_at = _next_state(attempt, number, row.created_at, policy)
        new_attempts.append(_attempt_row(attempt, number))
        changes.append({"b_id": row.id, "status": status, "count": number, "next": next_attempt_at})
        if status != PENDING:
            finished.add(row.log_id)
        _tell(attempt.result, row.destination_id, row.log_id, number, status)
    if changes:
        session.execute(sa.insert(TABLES["attempts"]), new_attempts)
        session.execute(_MOVE_ON, changes)
    return finished


def _tell(result: AttemptResult, destination_id: str, log_id: str, number: int, status: str) -> None:
    """Failures reach the server log, not only /metrics: a warning per failed attempt, an error on giving up.
    Identifiers and the sender's short reason only, never payload."""
    if result.outcome in (Outcome.DELIVERED, Outcome.FILTERED):
        return
    fields = {"destination_id": destination_id, "log_id": log_id, "attempt": number, "reason": result.detail}
    if status == FAILED:
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


def _next_state(attempt: Sent, number: int, created_at: datetime, policy: Policy) -> tuple[str, datetime | None]:
    """(status, next attempt time) after attempt ``number``."""
    if attempt.result.outcome is not Outcome.RETRY:
        return _FINAL_STATUS[attempt.result.outcome], None
    next_attempt_at = retry.next_attempt_at(
        failures=number,
        now=attempt.finished_at,
        created_at=created_at,
        max_age=policy.max_age,
        schedule=policy.schedule,
    )
    return (PENDING if next_attempt_at else FAILED), next_attempt_at


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


def settle_logs(session: Session, log_ids: Iterable[str]) -> None:
    """Set each log's status from its deliveries: ``received`` while any is pending, then delivered or failed."""
    ids = sorted(set(log_ids))
    if not ids:
        return
    # Lock the log rows first (PostgreSQL; in one order, so no deadlock): two nodes finishing a log's last two
    # deliveries at once must not both see the other's as pending. The UPDATE below then reads committed state.
    session.execute(sa.select(Log.id).where(Log.id.in_(ids)).order_by(Log.id).with_for_update())

    def having(status: str) -> sa.Exists:
        return sa.exists().where(Delivery.log_id == Log.id, Delivery.status == status)

    status = sa.case((having(PENDING), "received"), (having(FAILED), FAILED), else_=DELIVERED)
    logs = TABLES["logs"]
    session.execute(
        sa.update(logs).where(logs.c.id.in_(ids), sa.exists().where(Delivery.log_id == Log.id)).values(status=status)
    )


# -- views ------------------------------------------------------------------------------------------------------


def attempt_view(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "started_at": attempt.started_at.isoformat(),
        "finished_at": attempt.finished_at.isoformat() if attempt.finished_at else None,
        "outcome": attempt.outcome,
        "response_code": attempt.response_code,
        "detail": attempt.detail,
    }


def delivery_view(delivery: Delivery, attempts: Sequence[Attempt]) -> dict[str, Any]:
    """A delivery as DESIGN §6's log JSON shows it."""
    return {
        "id": delivery.id,
        "destination_id": delivery.destination_id,
        "subscription_id": delivery.subscription_id,
        "status": delivery.status,
        "created_at": delivery.created_at.isoformat(),
        "next_attempt_at": delivery.next_attempt_at.isoformat() if delivery.next_attempt_at else None,
        "attempts": [attempt_view(a) for a in attempts],
    }


def views_for_logs(session: Session, log_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Every log's deliveries with their attempts (two queries however many logs), for log views."""
    rows = list(
        session.scalars(
            sa.select(Delivery).where(Delivery.log_id.in_(log_ids)).order_by(Delivery.created_at, Delivery.id)
        )
    )
    attempts: dict[str, list[Attempt]] = {d.id: [] for d in rows}
    if rows:
        query = sa.select(Attempt).where(Attempt.delivery_id.in_(list(attempts))).order_by(Attempt.id)
        for attempt in session.scalars(query):
            attempts[attempt.delivery_id].append(attempt)
    views: dict[str, list[dict[str, Any]]] = {log_id: [] for log_id in log_ids}
    for delivery in rows:
        views[delivery.log_id].append(delivery_view(delivery, attempts[delivery.id]))
    return views
