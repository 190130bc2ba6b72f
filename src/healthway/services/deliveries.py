"""Deliveries: routing a new log to its subscriptions, queueing replays, and the log views of deliveries.

``route`` runs inside the intake transaction, so a log and its deliveries commit together (durable before
acknowledged, nothing routed twice). Queueing (storage.queue) wakes the workers once the transaction commits;
they claim the deliveries, send them and record each attempt (delivery/).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.delivery_states import DeliveryStatus
from healthway.domain.routing import Filters, MessageFacts, Ordering, matches
from healthway.errors import InvalidRequest
from healthway.storage import queue
from healthway.storage.models import Attempt, Delivery, Destination, Log, Subscription, new_id

TABLES = Delivery.metadata.tables  # Core tables: these statements need no unit-of-work bookkeeping


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
    queue.enqueue(session, rows)
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
        "status": DeliveryStatus.PENDING.value,
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
        .where(
            table.c.destination_id == destination_id,
            table.c.status == DeliveryStatus.PENDING.value,
            table.c.next_attempt_at > now,
        )
        .values(next_attempt_at=now)
    )
    queue.announce(session)


def new_delivery(
    session: Session, *, log: Log, subscription: Subscription | None, now: datetime, destination_id: str | None = None
) -> Delivery:
    """A pending delivery of ``log``, at the end of its subscription's FIFO lane (replays use this)."""
    sequence = (
        _take_sequences(session, [subscription.id])[subscription.id] if subscription and _is_fifo(subscription) else 0
    )
    target = subscription.destination_id if subscription else destination_id
    row = _pending(log, subscription.id if subscription else None, target, sequence, now)
    queue.enqueue(session, [row])
    return session.get_one(Delivery, row["id"])


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
