"""The message log: find, list (filters, cursor pages, newest first), count by status, read payloads.

Payloads are PHI in production: only roles with ``logs:read_payload`` get them, and every read is audited.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor
from healthway.domain.audit import AuditAction
from healthway.domain.delivery_states import LogStatus
from healthway.domain.permissions import Permission
from healthway.errors import InvalidRequest, NotFound, PermissionDenied
from healthway.services import audit, authz
from healthway.storage.models import Environment, Log
from healthway.storage.pagination import page

STATUSES = tuple(status.value for status in LogStatus)
TRANSPORTS = ("http", "mllp", "sftp")


@dataclass(frozen=True)
class LogFilter:
    source_id: str | None = None
    transport: str | None = None
    data_model: str | None = None
    event_type: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    control_id: str | None = None  # free text, matched anywhere in the control id

    def __post_init__(self) -> None:
        """An unknown status or transport is a mistake to point out, not a filter that quietly matches nothing."""
        for name, value, allowed in (("status", self.status, STATUSES), ("transport", self.transport, TRANSPORTS)):
            if value is not None and value not in allowed:
                raise InvalidRequest(f"{name} must be one of: {', '.join(allowed)}")

    def apply(self, query: sa.Select[Log]) -> sa.Select[Log]:
        exact = {
            Log.source_id: self.source_id,
            Log.transport: self.transport,
            Log.data_model: self.data_model,
            Log.event_type: self.event_type,
            Log.status: self.status,
        }
        for column, value in exact.items():
            if value:
                query = query.where(column == value)
        if self.since:
            query = query.where(Log.received_at >= self.since)
        if self.until:
            query = query.where(Log.received_at < self.until)
        if self.control_id:
            query = query.where(Log.control_id.contains(self.control_id, autoescape=True))
        return query


def list_logs(
    session: Session,
    *,
    actor: Actor,
    environments: Sequence[Environment],
    filters: LogFilter,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[Sequence[Log], str | None]:
    """Newest first. Environments the actor may not read are left out (all must be of one organization)."""
    readable = [e.id for e in environments if authz.env_allows(session, actor, Permission.LOGS_READ, e)]
    if not readable and environments:
        authz.require_env(session, actor, Permission.LOGS_READ, environments[0])  # 403 or 404, as it should be
    query = filters.apply(sa.select(Log).where(Log.environment_id.in_(readable)))
    # The payload is deferred: lists never load message bodies.
    query = query.options(sa.orm.defer(Log.payload))
    return page(
        session, query, created_at=Log.received_at, row_id=Log.id, cursor=cursor, limit=limit, newest_first=True
    )


def count_by_status(session: Session, *, actor: Actor, environment: Environment) -> dict[str, int]:
    authz.require_env(session, actor, Permission.LOGS_READ, environment)
    rows = session.execute(
        sa.select(Log.status, sa.func.count()).where(Log.environment_id == environment.id).group_by(Log.status)
    )
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: count for status, count in rows})  # noqa: C416 (rows are Row objects)
    return counts


def get(session: Session, *, actor: Actor, log_id: str) -> tuple[Log, Environment]:
    row = session.execute(sa.select(Log, Environment).join(Environment).where(Log.id == log_id)).first()
    if row is None:
        raise NotFound("log not found")
    log, environment = row
    authz.require_env(session, actor, Permission.LOGS_READ, environment)
    return log, environment


def may_read_payload(session: Session, actor: Actor, environment: Environment) -> bool:
    return authz.env_allows(session, actor, Permission.LOGS_READ_PAYLOAD, environment)


def read_payload(session: Session, *, actor: Actor, log: Log, environment: Environment) -> bytes:
    """The raw payload; refused without ``logs:read_payload``; every read is audited."""
    if not may_read_payload(session, actor, environment):
        raise PermissionDenied(f"missing permission {Permission.LOGS_READ_PAYLOAD} in {environment.name}")
    audit.record(
        session,
        actor=actor,
        action=AuditAction.PAYLOAD_VIEW,
        organization_id=environment.organization_id,
        subject_type="log",
        subject_id=log.id,
        summary={"environment": environment.name, "size": log.size},
    )
    return log.payload


def payload_fields(payload: bytes) -> dict[str, Any]:
    """DESIGN §6: the raw body as text, or base64 with ``payload_encoding`` when it is not UTF-8 text."""
    try:
        return {"payload": payload.decode("utf-8")}
    except UnicodeDecodeError:
        return {"payload": base64.b64encode(payload).decode(), "payload_encoding": "base64"}
