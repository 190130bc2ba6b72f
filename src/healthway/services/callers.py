"""Where a caller acts: their organization, an environment of it, and the environments they may read.

The Platform API, the CLI and the dashboard name these by plain values (an organization ID, an environment name);
every list and action resolves them here, so that a bound token never reaches outside its organization.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

from healthway.domain.actors import Actor
from healthway.domain.permissions import Permission
from healthway.errors import InvalidRequest, NotFound
from healthway.services import authz, organizations
from healthway.services.paging import EnvironmentScope
from healthway.storage.models import Environment, Organization
from healthway.storage.pagination import page

T = TypeVar("T")


def organization(session: Session, actor: Actor, organization_id: str | None) -> Organization:
    """The organization a request acts in. The operator (the CLI) acts in any: the named one or the only one.
    A user acts in the token's own (a bound token acts nowhere else), else the named one (if they belong to it)
    or their only one."""
    if actor.is_operator:
        return organizations.resolve(session, organization_id)
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


def environment(session: Session, actor: Actor, organization_id: str | None, name: str) -> Environment:
    """The environment ``name`` of the caller's organization (no permission checked: the action checks its own)."""
    return organizations.environment(session, organization(session, actor, organization_id).id, name)


def readable_environments(
    session: Session, actor: Actor, scope: EnvironmentScope, permission: Permission
) -> list[Environment]:
    """The scope's named environment (after checking ``permission`` there), or, when none is named, every
    environment of the caller's organization where they hold ``permission`` (403 when they hold it in none)."""
    if scope.environment is not None:
        env = environment(session, actor, scope.organization_id, scope.environment)
        authz.require_env(session, actor, permission, env)
        return [env]
    envs = organizations.environments(session, organization(session, actor, scope.organization_id).id)
    readable = [e for e in envs if authz.env_allows(session, actor, permission, e)]
    if not readable and envs:
        authz.require_env(session, actor, permission, envs[0])  # 403 (or 404 outside the organization)
    return readable


def environment_rows(
    session: Session,
    *,
    actor: Actor,
    scope: EnvironmentScope,
    permission: Permission,
    query_for: Callable[[list[str]], sa.Select[T]],
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[Any],
    cursor: str | None,
    limit: int,
) -> tuple[dict[str, Environment], Sequence[T], str | None]:
    """One page (oldest first) of the rows ``query_for`` selects in the environments of ``scope`` that the caller
    may read with ``permission``; with those environments by ID and the next cursor."""
    envs = readable_environments(session, actor, scope, permission)
    rows, next_cursor = page(
        session, query_for([e.id for e in envs]), created_at=created_at, row_id=row_id, cursor=cursor, limit=limit
    )
    return {e.id: e for e in envs}, rows, next_cursor
