"""Replay: deliver a log again, as new deliveries linked to the same log (the message itself is never edited).

Sending a log to a destination it was never routed to discloses its payload there, so it is treated like a
payload read: in production only roles that may read payloads (``logs:read_payload``) may do it, and every such
replay is audited as ``payload:view`` besides the ``log:replay`` event that every replay writes.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor
from healthway.domain.audit import AuditAction
from healthway.domain.delivery_states import LogStatus, advance
from healthway.domain.permissions import Permission
from healthway.errors import InvalidRequest, NotFound, PermissionDenied
from healthway.services import audit, authz, deliveries
from healthway.storage.models import Delivery, Destination, Environment, Log, Subscription


def _routed(session: Session, log: Log) -> list[str]:
    """The destinations the log already went to (it has a delivery for them)."""
    return list(
        session.scalars(
            sa.select(Delivery.destination_id)
            .where(Delivery.log_id == log.id)
            .distinct()
            .order_by(Delivery.destination_id)
        )
    )


def _destination_ids(session: Session, log: Log, destination_id: str | None, routed: list[str]) -> list[str]:
    """The named destination (it must be in the log's environment), else every one the log was delivered to."""
    if destination_id is not None:
        destination = session.get(Destination, destination_id)
        if destination is None or destination.environment_id != log.environment_id:
            raise NotFound("destination not found")
        return [destination.id]
    if not routed:
        raise InvalidRequest("this log was never routed to a destination; name one to replay it to")
    return routed


def _require_disclosure(session: Session, actor: Actor, environment: Environment, new: list[str]) -> None:
    """A replay to a destination the log never went to is a payload disclosure: it needs payload reading."""
    if new and not authz.env_allows(session, actor, Permission.LOGS_READ_PAYLOAD, environment):
        raise PermissionDenied(
            f"a log is replayed only to destinations it was routed to, unless you hold "
            f"{Permission.LOGS_READ_PAYLOAD} in {environment.name}"
        )


def replay(
    session: Session, *, actor: Actor, log_id: str, destination_id: str | None = None, now: datetime
) -> tuple[Log, list[Delivery]]:
    """New pending deliveries of ``log_id`` (queued behind the subscription's FIFO lane when there is one).

    Writes a ``log:replay`` audit event, and a ``payload:view`` one when the log goes to a destination it was
    never routed to. Queueing them wakes the workers once the transaction commits.
    """
    log = session.get(Log, log_id)
    environment = session.get(Environment, log.environment_id) if log else None
    if log is None or environment is None:
        raise NotFound("log not found")
    authz.require_env(session, actor, Permission.LOGS_REPLAY, environment)
    routed = _routed(session, log)
    targets = _destination_ids(session, log, destination_id, routed)
    new = [t for t in targets if t not in routed]
    _require_disclosure(session, actor, environment, new)
    created = [_redeliver(session, log, target, now) for target in targets]
    log.status = advance(log.status, LogStatus.RECEIVED)
    session.flush()
    _audit(session, actor, environment, log, [d.destination_id for d in created], new)
    return log, created


def _redeliver(session: Session, log: Log, target: str, now: datetime) -> Delivery:
    subscription = session.scalar(
        sa.select(Subscription).where(Subscription.source_id == log.source_id, Subscription.destination_id == target)
    )
    return deliveries.new_delivery(session, log=log, subscription=subscription, now=now, destination_id=target)


def _audit(session: Session, actor: Actor, environment: Environment, log: Log, sent: list[str], new: list[str]) -> None:
    def record(action: AuditAction, summary: dict[str, object]) -> None:
        audit.record(
            session,
            actor=actor,
            action=action,
            organization_id=environment.organization_id,
            subject_type="log",
            subject_id=log.id,
            summary=summary,
        )

    record(AuditAction.LOG_REPLAY, {"destinations": sent, "new_destinations": new})
    if new:  # the payload leaves for somewhere it never went: as much a disclosure as reading it
        record(
            AuditAction.PAYLOAD_VIEW,
            {"environment": environment.name, "size": log.size, "via": "replay", "destinations": new},
        )
