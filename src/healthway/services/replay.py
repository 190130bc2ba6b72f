"""Replay: deliver a log again, as new deliveries linked to the same log (the message itself is never edited)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor
from healthway.domain.audit import AuditAction
from healthway.domain.permissions import Permission
from healthway.errors import InvalidRequest, NotFound
from healthway.services import audit, authz, deliveries
from healthway.storage.models import Delivery, Destination, Environment, Log, Subscription


def _destination_ids(session: Session, log: Log, destination_id: str | None) -> list[str]:
    """The named destination (it must be in the log's environment), else every one the log was delivered to."""
    if destination_id is not None:
        destination = session.get(Destination, destination_id)
        if destination is None or destination.environment_id != log.environment_id:
            raise NotFound("destination not found")
        return [destination.id]
    earlier = session.scalars(
        sa.select(Delivery.destination_id).where(Delivery.log_id == log.id).distinct().order_by(Delivery.destination_id)
    ).all()
    if not earlier:
        raise InvalidRequest("this log was never routed to a destination; name one to replay it to")
    return list(earlier)


def replay(
    session: Session, *, actor: Actor, log_id: str, destination_id: str | None = None, now: datetime
) -> tuple[Log, list[Delivery]]:
    """New pending deliveries of ``log_id`` (queued behind the subscription's FIFO lane when there is one).

    Writes a ``log:replay`` audit event. The caller wakes the workers after committing.
    """
    log = session.get(Log, log_id)
    environment = session.get(Environment, log.environment_id) if log else None
    if log is None or environment is None:
        raise NotFound("log not found")
    authz.require_env(session, actor, Permission.LOGS_REPLAY, environment)
    created = []
    for target in _destination_ids(session, log, destination_id):
        subscription = session.scalar(
            sa.select(Subscription).where(
                Subscription.source_id == log.source_id, Subscription.destination_id == target
            )
        )
        created.append(
            deliveries.new_delivery(session, log=log, subscription=subscription, now=now, destination_id=target)
        )
    log.status = "received"
    session.flush()
    deliveries.announce(session)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.LOG_REPLAY,
        organization_id=environment.organization_id,
        subject_type="log",
        subject_id=log.id,
        summary={"destinations": [d.destination_id for d in created]},
    )
    return log, created
