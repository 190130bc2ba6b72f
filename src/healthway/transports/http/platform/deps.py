"""Shared dependencies of the Platform API: the caller (a user, by personal access token) and paging."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor, ActorType
from healthway.domain.permissions import Permission
from healthway.errors import InvalidRequest, NotFound, Unauthenticated
from healthway.runtime import Healthway
from healthway.services import authz, organizations, tokens
from healthway.storage.models import Environment, Organization, User
from healthway.storage.pagination import page


def get_healthway(request: Request) -> Healthway:
    hw: Healthway = request.app.state.healthway
    return hw


def current_actor(request: Request) -> Actor:
    """The user behind ``Authorization: Bearer hwpat_...``; 401 for anything else."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("a personal access token is required: Authorization: Bearer hwpat_...")
    hw = get_healthway(request)
    with hw.db.session() as session:
        row = tokens.authenticate(session, token.strip(), now=hw.clock())
        user = session.get(User, row.user_id) if row else None
        if row is None or user is None:
            raise Unauthenticated("invalid, expired or revoked personal access token")
        client = request.client.host if request.client else None
        return Actor(ActorType.USER, id=user.id, label=user.email, address=client, organization_id=row.organization_id)


T = TypeVar("T")

HealthwayDep = Annotated[Healthway, Depends(get_healthway)]
ActorDep = Annotated[Actor, Depends(current_actor)]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]
OrganizationParam = Annotated[
    str | None, Query(alias="organization", description="Organization ID; needed only when you belong to several")
]


def caller_organization(session: Session, actor: Actor, organization_id: str | None) -> Organization:
    """The organization a request acts in: the token's own (a bound token acts nowhere else), else the named one
    (if the caller belongs to it) or the caller's only one."""
    memberships = organizations.memberships_of(session, actor)
    if actor.organization_id is not None:
        bound = memberships.get(actor.organization_id)
        if bound is None or organization_id not in (None, bound.id):
            raise NotFound("organization not found")
        return bound
    if organization_id:
        if organization_id not in memberships:
            raise NotFound("organization not found")
        return memberships[organization_id]
    if len(memberships) == 1:
        return next(iter(memberships.values()))
    if not memberships:
        raise NotFound("you belong to no organization")
    raise InvalidRequest("you belong to several organizations; add ?organization=ID")


def caller_environment(session: Session, actor: Actor, organization_id: str | None, name: str) -> Environment:
    return organizations.environment(session, caller_organization(session, actor, organization_id).id, name)


def readable_environments(
    session: Session, actor: Actor, *, organization_id: str | None, environment: str | None, permission: Permission
) -> list[Environment]:
    """The named environment (after checking ``permission`` there), or, when none is named, every environment of
    the caller's organization where they hold ``permission`` (403 when they hold it in none, as for logs)."""
    if environment is not None:
        env = caller_environment(session, actor, organization_id, environment)
        authz.require_env(session, actor, permission, env)
        return [env]
    envs = organizations.environments(session, caller_organization(session, actor, organization_id).id)
    readable = [e for e in envs if authz.env_allows(session, actor, permission, e)]
    if not readable and envs:
        authz.require_env(session, actor, permission, envs[0])  # 403 (or 404 outside the organization)
    return readable


def environment_page(
    session: Session,
    actor: Actor,
    *,
    organization_id: str | None,
    environment: str | None,
    permission: Permission,
    query_for: Callable[[list[str]], sa.Select[T]],
    model: Any,
    cursor: str | None,
    limit: int,
) -> tuple[dict[str, Environment], Sequence[T], str | None]:
    """One page (oldest first) of the objects of ``environment``, or of every environment the caller may read
    when it is None, with those environments by id."""
    envs = readable_environments(
        session, actor, organization_id=organization_id, environment=environment, permission=permission
    )
    rows, next_cursor = page(
        session,
        query_for([e.id for e in envs]),
        created_at=model.created_at,
        row_id=model.id,
        cursor=cursor,
        limit=limit,
    )
    return {e.id: e for e in envs}, rows, next_cursor
