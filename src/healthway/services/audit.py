"""The audit trail: append-only, hash-chained, written in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor
from healthway.domain.audit import GENESIS, AuditAction, chain_digest
from healthway.domain.permissions import Permission
from healthway.errors import InvalidRequest
from healthway.services import authz, callers
from healthway.services.paging import Page, View
from healthway.storage.models import AuditEvent, utcnow
from healthway.storage.pagination import decode_cursor, encode_cursor

_CHAIN_LOCK = 0x4857_4155  # "HWAU": serializes chain appends on PostgreSQL (SQLite serializes writers itself)


def _chained_fields(event: AuditEvent) -> dict[str, Any]:
    return {
        "organization_id": event.organization_id,
        "occurred_at": event.occurred_at.isoformat(),
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "client_address": event.client_address,
        "action": event.action,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "summary": event.summary,
    }


def record(
    session: Session,
    *,
    actor: Actor,
    action: AuditAction,
    organization_id: str | None,
    subject_type: str | None = None,
    subject_id: str | None = None,
    summary: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event. ``summary`` says what changed; callers never put secrets in it."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(_CHAIN_LOCK)))
    prev = session.scalar(sa.select(AuditEvent.digest).order_by(AuditEvent.id.desc()).limit(1)) or GENESIS
    event = AuditEvent(
        organization_id=organization_id,
        occurred_at=utcnow(),
        actor_type=actor.type.value,
        actor_id=actor.label or actor.id,
        client_address=actor.address,
        action=action.value,
        subject_type=subject_type,
        subject_id=subject_id,
        summary=summary or {},
        prev_digest=prev,
    )
    event.digest = chain_digest(prev, _chained_fields(event))
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class ChainReport:
    events: int
    first_broken_id: int | None

    @property
    def ok(self) -> bool:
        return self.first_broken_id is None


def verify_chain(session: Session) -> ChainReport:
    prev, count, last_id = GENESIS, 0, 0
    while batch := session.scalars(
        sa.select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(1000)
    ).all():
        for event in batch:
            count += 1
            if event.prev_digest != prev or chain_digest(prev, _chained_fields(event)) != event.digest:
                return ChainReport(count, event.id)
            prev, last_id = event.digest, event.id
        session.expunge_all()  # keep memory flat on long chains
    return ChainReport(count, None)


@dataclass(frozen=True)
class EventFilter:
    """Which events a listing shows: ``since <= occurred_at < until``, by ``actor`` (e-mail, client_id, api_key or
    cli) and ``action`` (e.g. user:login) when given."""

    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, query: sa.Select[AuditEvent]) -> sa.Select[AuditEvent]:
        if self.actor:
            query = query.where(AuditEvent.actor_id == self.actor)
        if self.action:
            query = query.where(AuditEvent.action == self.action)
        if self.since:
            query = query.where(AuditEvent.occurred_at >= self.since)
        if self.until:
            query = query.where(AuditEvent.occurred_at < self.until)
        return query


def list_page(
    session: Session,
    *,
    actor: Actor,
    organization_id: str | None,
    filters: EventFilter,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[View]:
    """The caller's organization's events, newest first; org owners only (``audit:read``)."""
    organization = callers.organization(session, actor, organization_id)
    authz.require_org(session, actor, Permission.AUDIT_READ, organization.id)
    query = filters.apply(sa.select(AuditEvent).where(AuditEvent.organization_id == organization.id))
    before_id = _before_id(cursor)
    if before_id:
        query = query.where(AuditEvent.id < before_id)
    events = list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit + 1)))
    more = len(events) > limit
    events = events[:limit]
    next_cursor = encode_cursor(events[-1].occurred_at, str(events[-1].id)) if more else None
    return Page([event_view(e) for e in events], next_cursor)


def _before_id(cursor: str | None) -> int | None:
    """Event ids grow with time, so the id alone orders and pages the trail."""
    if not cursor:
        return None
    _, event_id = decode_cursor(cursor)
    if not event_id.isdigit():
        raise InvalidRequest("invalid cursor")
    return int(event_id)


def event_view(event: AuditEvent) -> View:
    return {
        "id": event.id,
        "occurred_at": event.occurred_at.isoformat(),
        "actor_type": event.actor_type,
        "actor": event.actor_id,
        "client_address": event.client_address,
        "action": event.action,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "summary": event.summary,
    }
