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

from healthway.domain import routing
from healthway.domain.actors import Actor
from healthway.domain.audit import AuditAction
from healthway.domain.delivery_states import LogStatus
from healthway.domain.permissions import Permission
from healthway.errors import InvalidRequest, NotFound, PermissionDenied
from healthway.services import audit, authz, callers, deliveries
from healthway.services.paging import EnvironmentScope, Page, View
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
    message_type: str | None = None  # an HL7v2 MSH-9 pattern, as subscriptions take it: ``ADT^A01``, ``ADT^*``

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
        if self.message_type:
            like = routing.message_type_like(self.message_type)
            query = query.where(sa.func.upper(Log.message_type).like(like, escape=routing.LIKE_ESCAPE))
        return query


def list_page(
    session: Session,
    *,
    actor: Actor,
    scope: EnvironmentScope,
    filters: LogFilter,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[View]:
    """Logs of the scope's environments that the actor may read, newest first, without payloads."""
    envs = callers.readable_environments(session, actor, scope, Permission.LOGS_READ)
    query = filters.apply(sa.select(Log).where(Log.environment_id.in_([e.id for e in envs])))
    # The payload is deferred: lists never load message bodies.
    query = query.options(sa.orm.defer(Log.payload))
    rows, next_cursor = page(
        session, query, created_at=Log.received_at, row_id=Log.id, cursor=cursor, limit=limit, newest_first=True
    )
    return Page(views(session, rows, {e.id: e for e in envs}), next_cursor)


def counts(session: Session, *, actor: Actor, organization_id: str | None, environment: str) -> View:
    """How many logs of the caller's ``environment`` are in each status."""
    env = callers.environment(session, actor, organization_id, environment)
    return {"environment": env.name, "counts": count_by_status(session, actor=actor, environment=env)}


def detail(session: Session, *, actor: Actor, log_id: str) -> View:
    """One log with its deliveries and attempts; ``payload`` only for roles that may read it there (that read is
    audited)."""
    log, environment = get(session, actor=actor, log_id=log_id)
    result = views(session, [log], {environment.id: environment})[0]
    if may_read_payload(session, actor, environment):
        result |= payload_fields(read_payload(session, actor=actor, log=log, environment=environment))
    return result


def view(log: Log, environment: Environment, delivery_views: list[View]) -> View:
    """DESIGN §6's log JSON (without the payload)."""
    return {
        "id": log.id,
        "environment": environment.name,
        "source_id": log.source_id,
        "transport": log.transport,
        "content_type": log.content_type,
        "data_model": log.data_model,
        "event_type": log.event_type,
        "message_type": log.message_type,
        "control_id": log.control_id,
        "sha256": log.sha256,
        "size": log.size,
        "received_at": log.received_at.isoformat(),
        "status": log.status,
        "test": log.test,
        "deliveries": delivery_views,
    }


def views(session: Session, logs: Sequence[Log], environments: dict[str, Environment]) -> list[View]:
    """Several logs with their deliveries and attempts (a fixed number of queries)."""
    by_log = deliveries.views_for_logs(session, [log.id for log in logs])
    return [view(log, environments[log.environment_id], by_log[log.id]) for log in logs]


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
