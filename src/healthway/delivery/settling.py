"""Settling logs: once a delivery finishes, its log's status follows from all of its deliveries."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.delivery_states import DeliveryStatus, LogStatus
from healthway.storage.models import Delivery, Log


def settle_logs(session: Session, log_ids: Iterable[str]) -> None:
    """Set each log's status from its deliveries: ``received`` while any is pending, then failed when any was
    given up, else delivered. Only logs in ``received`` move (domain.delivery_states.LOG_MOVES: a finished log
    is reopened by a replay, never re-settled)."""
    ids = sorted(set(log_ids))
    if not ids:
        return
    # Lock the log rows first (PostgreSQL; in one order, so no deadlock): two nodes finishing a log's last two
    # deliveries at once must not both see the other's as pending. The UPDATE below then reads committed state.
    session.execute(sa.select(Log.id).where(Log.id.in_(ids)).order_by(Log.id).with_for_update())

    def having(status: DeliveryStatus) -> sa.Exists:
        return sa.exists().where(Delivery.log_id == Log.id, Delivery.status == status.value)

    status = sa.case(
        (having(DeliveryStatus.PENDING), LogStatus.RECEIVED.value),
        (having(DeliveryStatus.FAILED), LogStatus.FAILED.value),
        else_=LogStatus.DELIVERED.value,
    )
    logs = Log.metadata.tables["logs"]
    session.execute(
        sa.update(logs)
        .where(
            logs.c.id.in_(ids), logs.c.status == LogStatus.RECEIVED.value, sa.exists().where(Delivery.log_id == Log.id)
        )
        .values(status=status)
    )
