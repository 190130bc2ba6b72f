"""A lane's database steps: load what to send (one read), record what happened (one write)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.delivery.attempts import RetryPolicy, Sent, record
from healthway.delivery.senders import Message, Target
from healthway.delivery.settling import settle_logs
from healthway.storage import queue
from healthway.storage.models import Delivery, Destination, Log


@dataclass(frozen=True)
class Outgoing:
    delivery_id: str
    log_id: str
    target: Target
    message: Message
    destination_enabled: bool


def load_outgoing(session: Session, delivery_ids: list[str], *, max_bytes: int) -> list[Outgoing]:
    """The claimed deliveries in claim order, cut off once their payloads pass ``max_bytes`` (at least one).

    Deliveries left out stay claimed until ``record_lane`` gives them back.
    """
    rows = session.execute(
        sa.select(Delivery.id, Log.id, Log.source_id, Log.content_type, Log.control_id, Log.size, Destination)
        .join(Log, Log.id == Delivery.log_id)
        .join(Destination, Destination.id == Delivery.destination_id)
        .where(Delivery.id.in_(delivery_ids), Delivery.status == queue.PENDING)
    ).all()
    by_id = {row[0]: row for row in rows}
    chosen: list[sa.Row[str, str, str, str, str | None, int, Destination]] = []
    total = 0
    for delivery_id in delivery_ids:
        if (row := by_id.get(delivery_id)) is None:
            continue
        if chosen and total + row[5] > max_bytes:
            break
        chosen.append(row)
        total += row[5]
    payloads = dict(session.execute(sa.select(Log.id, Log.payload).where(Log.id.in_([r[1] for r in chosen]))).all())
    return [_outgoing(row, payloads[row[1]]) for row in chosen]


def _outgoing(row: sa.Row[str, str, str, str, str | None, int, Destination], payload: bytes) -> Outgoing:
    delivery_id, log_id, source_id, content_type, control_id, _size, destination = row
    target = Target(destination.id, destination.kind, dict(destination.config))
    message = Message(delivery_id, log_id, source_id, content_type, payload, control_id)
    return Outgoing(delivery_id, log_id, target, message, destination.enabled)


def record_lane(session: Session, claimed: list[str], results: list[Sent], *, policy: RetryPolicy) -> None:
    """Store the lane's attempts (in the order they were sent), give back the deliveries it did not attempt,
    and settle the logs that have a finished delivery."""
    finished_logs = record(session, results, policy=policy)
    attempted = {sent.delivery_id for sent in results}
    queue.release(session, [d for d in claimed if d not in attempted])
    settle_logs(session, finished_logs)
