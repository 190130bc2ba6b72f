"""Subscriptions: source → destination, with optional filters and an ordering mode (DESIGN §1)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor
from healthway.domain.audit import AuditAction
from healthway.domain.permissions import Permission
from healthway.domain.routing import Ordering
from healthway.errors import Conflict, InvalidRequest
from healthway.services import audit, authz, callers
from healthway.services.paging import EnvironmentScope, Page, View
from healthway.storage.models import Destination, Environment, Source, Subscription

MAX_FILTERS = 100
# ``ADT^A01``, ``ADT^A01^ADT_A01``, ``ADT^*`` or ``*``.
_MESSAGE_TYPE = re.compile(r"^(\*|[A-Za-z0-9]{3}(\^([A-Za-z0-9_]{1,10}|\*)){0,2})$")


def _names(values: Sequence[str], what: str) -> list[str]:
    cleaned = [v.strip() for v in values]
    if len(cleaned) > MAX_FILTERS or any(not v or len(v) > 100 for v in cleaned):
        raise InvalidRequest(f"{what} filters must be 1 to 100 characters each, at most {MAX_FILTERS}")
    return list(dict.fromkeys(cleaned))


def _message_types(values: Sequence[str]) -> list[str]:
    cleaned = _names(values, "message type")
    if bad := [v for v in cleaned if not _MESSAGE_TYPE.match(v)]:
        raise InvalidRequest(f"message type filter {bad[0][:40]!r} is not like ADT^A01 or ADT^*")
    return [v.upper() for v in cleaned]


def _ordering(value: str) -> str:
    try:
        return Ordering(value).value
    except ValueError:
        raise InvalidRequest("ordering must be fifo or parallel") from None


def create(
    session: Session,
    *,
    actor: Actor,
    source: Source,
    destination: Destination,
    environment: Environment,
    data_models: Sequence[str] = (),
    event_types: Sequence[str] = (),
    message_types: Sequence[str] = (),
    ordering: str = Ordering.FIFO.value,
) -> Subscription:
    """``environment`` is the source's; the destination must be in the same one."""
    authz.require_env(session, actor, Permission.SUBSCRIPTIONS_WRITE, environment)
    if source.environment_id != environment.id or destination.environment_id != environment.id:
        raise InvalidRequest("the source and the destination must be in the same environment")
    exists = sa.select(Subscription.id).where(
        Subscription.source_id == source.id, Subscription.destination_id == destination.id
    )
    if session.scalar(exists) is not None:
        raise Conflict("this source is already subscribed to this destination")
    subscription = Subscription(
        source_id=source.id,
        destination_id=destination.id,
        data_models=_names(data_models, "data model"),
        event_types=_names(event_types, "event type"),
        message_types=_message_types(message_types),
        ordering=_ordering(ordering),
    )
    session.add(subscription)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.SUBSCRIPTION_CREATE,
        organization_id=environment.organization_id,
        subject_type="subscription",
        subject_id=subscription.id,
        summary={"source": source.id, "destination": destination.id, "ordering": subscription.ordering},
    )
    return subscription


def find(session: Session, subscription_id: str) -> tuple[Subscription, Environment] | None:
    row = session.execute(
        sa.select(Subscription, Environment)
        .join(Source, Source.id == Subscription.source_id)
        .join(Environment, Environment.id == Source.environment_id)
        .where(Subscription.id == subscription_id)
    ).first()
    return (row[0], row[1]) if row else None


def visible(
    session: Session, *, actor: Actor, subscription_id: str, permission: Permission
) -> tuple[Subscription, Environment]:
    """The subscription and its environment, if the actor holds ``permission`` there; else NotFound (or 403)."""
    return authz.visible(session, actor, permission, find(session, subscription_id), "subscription")


def list_page(
    session: Session,
    *,
    actor: Actor,
    scope: EnvironmentScope,
    source_id: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[View]:
    """Subscriptions (of ``source_id`` only, when given) in the scope's environments that the actor may read,
    oldest first."""
    envs, rows, next_cursor = callers.environment_rows(
        session,
        actor=actor,
        scope=scope,
        permission=Permission.SUBSCRIPTIONS_READ,
        query_for=lambda ids: in_environments(ids, source_id),
        created_at=Subscription.created_at,
        row_id=Subscription.id,
        cursor=cursor,
        limit=limit,
    )
    env_of = environment_ids(session, rows)
    return Page([view(s, envs[env_of[s.id]]) for s in rows], next_cursor)


def in_environments(environment_ids: Sequence[str], source_id: str | None = None) -> sa.Select[Subscription]:
    query = sa.select(Subscription).join(Source, Source.id == Subscription.source_id)
    query = query.where(Source.environment_id.in_(environment_ids))
    return query.where(Subscription.source_id == source_id) if source_id else query


def environment_ids(session: Session, subscriptions: Sequence[Subscription]) -> dict[str, str]:
    """Each subscription's environment id (its source's), by subscription id, in one query."""
    rows = session.execute(
        sa.select(Subscription.id, Source.environment_id)
        .join(Source, Source.id == Subscription.source_id)
        .where(Subscription.id.in_([s.id for s in subscriptions]))
    )
    return {sub_id: env_id for sub_id, env_id in rows}  # noqa: C416 (rows are Row objects)


def delete(session: Session, *, actor: Actor, subscription: Subscription, environment: Environment) -> None:
    """Pending deliveries stay and are still sent (they keep their order); new logs no longer match."""
    authz.require_env(session, actor, Permission.SUBSCRIPTIONS_WRITE, environment)
    session.delete(subscription)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.SUBSCRIPTION_DELETE,
        organization_id=environment.organization_id,
        subject_type="subscription",
        subject_id=subscription.id,
        summary={"source": subscription.source_id, "destination": subscription.destination_id},
    )


def set_enabled(
    session: Session, *, actor: Actor, subscription: Subscription, environment: Environment, enabled: bool
) -> None:
    """A disabled subscription routes no new logs; deliveries already queued for it are still sent."""
    authz.require_env(session, actor, Permission.SUBSCRIPTIONS_WRITE, environment)
    subscription.enabled = enabled
    audit.record(
        session,
        actor=actor,
        action=AuditAction.SUBSCRIPTION_UPDATE,
        organization_id=environment.organization_id,
        subject_type="subscription",
        subject_id=subscription.id,
        summary={"enabled": enabled},
    )


def view(subscription: Subscription, environment: Environment) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "environment": environment.name,
        "source_id": subscription.source_id,
        "destination_id": subscription.destination_id,
        "data_models": list(subscription.data_models),
        "event_types": list(subscription.event_types),
        "message_types": list(subscription.message_types),
        "ordering": subscription.ordering,
        "enabled": subscription.enabled,
        "created_at": subscription.created_at.isoformat(),
    }
