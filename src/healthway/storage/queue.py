"""The delivery queue: claiming due deliveries for a worker, lane by lane.

A *lane* is what must be delivered in order: all deliveries of one ``fifo`` subscription, or a single delivery of
a ``parallel`` subscription (or of a replay with no subscription). A claim leases the lane's due head and, for a
FIFO lane, the pending deliveries queued behind it (``locked_until``), so no other worker or node touches them
while they are sent; a crashed worker's leases expire by themselves.

PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets workers on several nodes claim side by side without waiting for each
other. SQLite: the statement runs under ``BEGIN IMMEDIATE`` and there is exactly one node, so it is already
exclusive (SQLAlchemy renders no ``FOR UPDATE`` there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from healthway.domain.delivery_states import DeliveryStatus
from healthway.domain.routing import Ordering
from healthway.storage.db import wake_after_commit
from healthway.storage.models import Delivery, Subscription

PENDING = DeliveryStatus.PENDING.value
PG_CHANNEL = "healthway_deliveries"  # LISTEN/NOTIFY channel that wakes the workers of every node


@dataclass
class Lane:
    """Deliveries a worker now owns, in the order they must be attempted."""

    key: str  # the subscription ID of a FIFO lane, else the delivery ID
    fifo: bool
    delivery_ids: list[str] = field(default_factory=list)


def enqueue(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert pending deliveries (``rows`` of the deliveries table) and wake the workers once they commit."""
    session.execute(sa.insert(Delivery.metadata.tables["deliveries"]), list(rows))
    announce(session)


def announce(session: Session) -> None:
    """Wake the delivery workers once this transaction commits: this process's through the Database's wakers,
    every other node's and process's through PostgreSQL NOTIFY (delivered at commit, dropped on rollback).
    On SQLite other processes (a CLI replay) are seen by the worker's capped sleep."""
    wake_after_commit(session)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_notify(PG_CHANNEL, "")))


def _is_head() -> sa.ColumnElement[bool]:
    """No earlier delivery of the same FIFO subscription is still pending."""
    earlier = aliased(Delivery)
    return ~sa.exists().where(
        earlier.subscription_id == Delivery.subscription_id,
        earlier.status == PENDING,
        earlier.sequence < Delivery.sequence,
    )


def _due_heads(now: datetime, limit: int) -> sa.Select[str, str | None, str]:
    not_fifo = sa.or_(Subscription.id.is_(None), Subscription.ordering != Ordering.FIFO.value)
    return (
        sa.select(Delivery.id, Delivery.subscription_id, Subscription.ordering)
        .outerjoin(Subscription, Subscription.id == Delivery.subscription_id)
        .where(
            Delivery.status == PENDING,
            Delivery.next_attempt_at <= now,
            sa.or_(Delivery.locked_until.is_(None), Delivery.locked_until < now),
            sa.or_(not_fifo, _is_head()),
        )
        .order_by(Delivery.next_attempt_at, Delivery.sequence)
        .limit(limit)
    )


def any_due(session: Session, *, now: datetime) -> bool:
    """Whether ``claim`` would find a lane now; a read, so a worker with nothing to do never takes SQLite's
    write lock from intake."""
    return session.execute(_due_heads(now, 1)).first() is not None


def _followers(subscription_id: str, head_id: str, limit: int) -> sa.Select[str]:
    head_sequence = sa.select(Delivery.sequence).where(Delivery.id == head_id).scalar_subquery()
    return (
        sa.select(Delivery.id)
        .where(
            Delivery.subscription_id == subscription_id,
            Delivery.status == PENDING,
            Delivery.sequence > head_sequence,
        )
        .order_by(Delivery.sequence)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def claim(session: Session, *, now: datetime, lease: timedelta, max_lanes: int, batch: int) -> list[Lane]:
    """Lease up to ``max_lanes`` due lanes (a FIFO lane with up to ``batch`` deliveries) until ``now + lease``."""
    lanes: list[Lane] = []
    due = _due_heads(now, max_lanes).with_for_update(of=Delivery, skip_locked=True)
    for delivery_id, subscription_id, ordering in session.execute(due).all():
        fifo = subscription_id is not None and ordering == Ordering.FIFO.value
        lane = Lane(subscription_id if fifo and subscription_id else delivery_id, fifo, [delivery_id])
        if fifo and subscription_id and batch > 1:
            lane.delivery_ids += session.scalars(_followers(subscription_id, delivery_id, batch - 1)).all()
        lanes.append(lane)
    _lease(session, [d for lane in lanes for d in lane.delivery_ids], now + lease)
    return lanes


def claim_next(session: Session, *, subscription_id: str, now: datetime, lease: timedelta, batch: int) -> list[str]:
    """The next batch of a FIFO lane whose worker just recorded its previous batch: the subscription's head and
    the deliveries behind it, if the head is due and nobody holds it. Lets a busy lane keep going without a scan
    of the whole queue."""
    head = session.execute(
        sa.select(Delivery.id, Delivery.next_attempt_at, Delivery.locked_until)
        .where(Delivery.subscription_id == subscription_id, Delivery.status == PENDING)
        .order_by(Delivery.sequence)
        .limit(1)
        .with_for_update()
    ).first()
    if head is None or (head.next_attempt_at and head.next_attempt_at > now):
        return []
    if head.locked_until is not None and head.locked_until >= now:
        return []
    claimed = [head.id, *session.scalars(_followers(subscription_id, head.id, batch - 1))]
    _lease(session, claimed, now + lease)
    return claimed


def _lease(session: Session, delivery_ids: list[str], until: datetime) -> None:
    if delivery_ids:
        session.execute(sa.update(Delivery).where(Delivery.id.in_(delivery_ids)).values(locked_until=until))


def release(session: Session, delivery_ids: Sequence[str]) -> None:
    """Give back leases of deliveries that were claimed but not attempted."""
    if delivery_ids:
        session.execute(sa.update(Delivery).where(Delivery.id.in_(delivery_ids)).values(locked_until=None))


def release_all(session: Session) -> int:
    """Drop every lease. Only for SQLite at start-up: it runs one node, so any lease belongs to a dead process."""
    result = session.execute(sa.update(Delivery).where(Delivery.locked_until.is_not(None)).values(locked_until=None))
    return int(getattr(result, "rowcount", 0) or 0)


def next_due(session: Session, *, now: datetime) -> datetime | None:
    """The earliest future time a pending delivery may become due (a retry time, or a lease's end).

    Times already past are left out: when nothing could be claimed, those belong to FIFO deliveries queued behind
    a head that waits, and waking for them would only spin.
    """
    due = sa.func.coalesce(Delivery.locked_until, Delivery.next_attempt_at)
    return session.scalar(sa.select(sa.func.min(due)).where(Delivery.status == PENDING, due > now))


def depth(session: Session) -> tuple[int, datetime | None]:
    """(pending deliveries, when the oldest of them was created)."""
    row = session.execute(
        sa.select(sa.func.count(), sa.func.min(Delivery.created_at)).where(Delivery.status == PENDING)
    ).one()
    return int(row[0]), row[1]
