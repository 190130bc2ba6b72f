"""Sources: the sending systems of one environment."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor
from healthway.domain.audit import AuditAction
from healthway.domain.permissions import Permission
from healthway.errors import Conflict, InvalidRequest
from healthway.services import audit, authz, callers
from healthway.services.paging import EnvironmentScope, Page, View
from healthway.storage.models import Environment, Log, Source, Subscription


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


def visible(session: Session, *, actor: Actor, source_id: str, permission: Permission) -> tuple[Source, Environment]:
    """The source and its environment, if the actor holds ``permission`` there; NotFound when it does not exist
    (or lies outside the actor's organizations)."""
    return authz.visible(session, actor, permission, find(session, source_id), "source")


def list_page(
    session: Session, *, actor: Actor, scope: EnvironmentScope, cursor: str | None = None, limit: int = 100
) -> Page[View]:
    """Sources of the scope's environments that the actor may read, oldest first."""
    envs, rows, next_cursor = callers.environment_rows(
        session,
        actor=actor,
        scope=scope,
        permission=Permission.SOURCES_READ,
        query_for=in_environments,
        created_at=Source.created_at,
        row_id=Source.id,
        cursor=cursor,
        limit=limit,
    )
    return Page([view(s, envs[s.environment_id]) for s in rows], next_cursor)


def view(source: Source, environment: Environment) -> View:
    return {"id": source.id, "name": source.name, "environment": environment.name}  # exactly DESIGN §6


def in_environments(environment_ids: Sequence[str]) -> sa.Select[Source]:
    return sa.select(Source).where(Source.environment_id.in_(environment_ids))


def rename(session: Session, *, actor: Actor, source: Source, environment: Environment, name: str) -> None:
    authz.require_env(session, actor, Permission.SOURCES_WRITE, environment)
    old, source.name = source.name, _check_name(name)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.SOURCE_UPDATE,
        organization_id=environment.organization_id,
        subject_type="source",
        subject_id=source.id,
        summary={"name": [old, source.name]},
    )


def delete(session: Session, *, actor: Actor, source: Source, environment: Environment, force: bool) -> None:
    """Refused while subscriptions or logs reference the source, unless ``force`` (which deletes them too)."""
    authz.require_env(session, actor, Permission.SOURCES_WRITE, environment)
    references = {
        "subscriptions": session.scalar(
            sa.select(sa.func.count()).select_from(Subscription).where(Subscription.source_id == source.id)
        ),
        "logs": session.scalar(sa.select(sa.func.count()).select_from(Log).where(Log.source_id == source.id)),
    }
    in_use = {k: v for k, v in references.items() if v}
    if in_use and not force:
        what = ", ".join(f"{n} {k}" for k, n in in_use.items())
        raise Conflict(f"source is referenced by {what}; delete with force to remove them too")
    session.delete(source)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.SOURCE_DELETE,
        organization_id=environment.organization_id,
        subject_type="source",
        subject_id=source.id,
        summary={"name": source.name, "forced": force, **in_use},
    )
