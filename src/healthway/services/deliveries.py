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
from sqlalchemy.orm import Session

from healthway.domain import retry
from healthway.domain.retry import AttemptResult, Outcome
from healthway.domain.routing import Filters, MessageFacts, Ordering, matches
from healthway.errors import InvalidRequest
from healthway.storage.models import Attempt, Delivery, Destination, Log, Subscription

PG_CHANNEL = "healthway_deliveries"  # LISTEN/NOTIFY channel that wakes the workers of every node
PENDING, DELIVERED, FAILED, FILTERED = "pending", "delivered", "failed", "filtered"
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


def _next_sequence(session: Session, subscription_id: str) -> int:
    """Take the subscription's next FIFO sequence number; the row lock is held until the intake commits."""
    bumped = (
        sa.update(Subscription)
        .where(Subscription.id == subscription_id)
        .values(next_sequence=Subscription.next_sequence + 1)
        .returning(Subscription.next_sequence)
    )
    return int(session.execute(bumped).scalar_one())


def route(session: Session, *, log: Log, destination_ids: list[str] | None) -> list[Delivery]:
    """One pending delivery per enabled subscription of ``log.source_id`` whose filters match, due at once.

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
    created = []
    for subscription in subscriptions:
        if matches(filters_of(subscription), facts):
            created.append(new_delivery(session, log=log, subscription=subscription, now=log.received_at))
    if created:
        announce(session)
    return created


def announce(session: Session) -> None:
    """Tell the workers of every node that deliveries are waiting (PostgreSQL NOTIFY, sent only on commit)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_notify(PG_CHANNEL, "")))


def new_delivery(
    session: Session, *, log: Log, subscription: Subscription | None, now: datetime, destination_id: str | None = None
) -> Delivery:
    """A pending delivery of ``log``, at the end of its subscription's FIFO lane (replays use this too)."""
    fifo = subscription is not None and subscription.ordering == Ordering.FIFO.value
    delivery = Delivery(
        log_id=log.id,
        subscription_id=subscription.id if subscription else None,
        destination_id=subscription.destination_id if subscription else destination_id,
        sequence=_next_sequence(session, subscription.id) if fifo and subscription else 0,
        status=PENDING,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    return delivery


# -- recording attempts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """When to stop retrying; the schedule is DESIGN §2's unless a test shortens it."""

    max_age: timedelta
    schedule: Sequence[float] = retry.SCHEDULE


def record(
    session: Session,
    *,
    delivery: Delivery,
    result: AttemptResult,
    started_at: datetime,
    finished_at: datetime,
    policy: Policy,
) -> Attempt:
    """Store one attempt and move the delivery on: finished, or rescheduled per the retry policy."""
    delivery.attempt_count += 1
    attempt = Attempt(
        delivery_id=delivery.id,
        number=delivery.attempt_count,
        started_at=started_at,
        finished_at=finished_at,
        outcome=result.outcome.value,
        response_code=result.response_code,
        detail=result.detail[: retry.MAX_DETAIL] or None,
    )
    session.add(attempt)
    delivery.locked_until = None
    if result.outcome is Outcome.RETRY:
        delivery.next_attempt_at = retry.next_attempt_at(
            failures=delivery.attempt_count,
            now=finished_at,
            created_at=delivery.created_at,
            max_age=policy.max_age,
            schedule=policy.schedule,
        )
        delivery.status = PENDING if delivery.next_attempt_at else FAILED
    else:
        delivery.status, delivery.next_attempt_at = _FINAL_STATUS[result.outcome], None
    return attempt


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
    session.execute(
        sa.update(Log).where(Log.id.in_(ids), sa.exists().where(Delivery.log_id == Log.id)).values(status=status)
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
