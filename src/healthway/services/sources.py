"""Sources: the sending systems of one environment."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor
from healthway.domain.audit import AuditAction
from healthway.domain.permissions import Permission
from healthway.errors import InvalidRequest
from healthway.services import audit, authz
from healthway.storage.models import Environment, Source


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("source name must be 1 to 200 characters")
    return name


def create(session: Session, *, actor: Actor, environment: Environment, name: str) -> Source:
    authz.require_env(session, actor, Permission.SOURCES_WRITE, environment)
    source = Source(environment_id=environment.id, name=_check_name(name))
    session.add(source)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.SOURCE_CREATE,
        organization_id=environment.organization_id,
        subject_type="source",
        subject_id=source.id,
        summary={"name": source.name, "environment": environment.name},
    )
    return source


def find(session: Session, source_id: str) -> tuple[Source, Environment] | None:
    row = session.execute(sa.select(Source, Environment).join(Environment).where(Source.id == source_id)).first()
    return (row[0], row[1]) if row else None


def list_in(session: Session, *, actor: Actor, environment: Environment) -> list[Source]:
    authz.require_env(session, actor, Permission.SOURCES_READ, environment)
    return list(
        session.scalars(sa.select(Source).where(Source.environment_id == environment.id).order_by(Source.created_at))
    )
