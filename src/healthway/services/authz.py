"""Permission checks. Every service calls ``require`` itself; the HTTP layer is not the only guard."""

from __future__ import annotations

from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor, ActorType
from healthway.domain.environments import EnvironmentName
from healthway.domain.permissions import (
    ENV_PERMISSIONS,
    ORG_ROLE_PERMISSIONS,
    EnvRole,
    OrgRole,
    Permission,
    env_permissions,
)
from healthway.errors import NotFound, PermissionDenied
from healthway.storage.models import Environment, EnvironmentRole, Membership

T = TypeVar("T")


def org_role(session: Session, actor: Actor, organization_id: str) -> OrgRole | None:
    """The actor's role in the organization; None for a token bound to another one (it acts nowhere else)."""
    if actor.type is not ActorType.USER or actor.organization_id not in (None, organization_id):
        return None
    role = session.scalar(
        sa.select(Membership.role).where(Membership.user_id == actor.id, Membership.organization_id == organization_id)
    )
    return OrgRole(role) if role else None


def owns_an_organization(session: Session, actor: Actor) -> bool:
    """Whether the actor is the owner of some organization (or the operator): who may read installation metrics."""
    if actor.is_operator:
        return True
    if actor.type is not ActorType.USER:
        return False
    owner = sa.select(Membership.user_id).where(Membership.user_id == actor.id, Membership.role == OrgRole.OWNER)
    return session.scalar(owner.limit(1)) is not None


def env_role(session: Session, actor: Actor, environment_id: str) -> EnvRole | None:
    if actor.type is not ActorType.USER:
        return None
    query = sa.select(EnvironmentRole.role).where(
        EnvironmentRole.user_id == actor.id, EnvironmentRole.environment_id == environment_id
    )
    if actor.organization_id is not None:  # a bound token has no role in another organization's environments
        query = query.join(Environment).where(Environment.organization_id == actor.organization_id)
    role = session.scalar(query)
    return EnvRole(role) if role else None


def require_org(session: Session, actor: Actor, permission: Permission, organization_id: str) -> None:
    """Organization-wide permission. Not a member at all → NotFound, so other organizations stay invisible."""
    if actor.is_operator:
        return
    role = org_role(session, actor, organization_id)
    if role is None:
        raise NotFound("organization not found")
    if permission not in ORG_ROLE_PERMISSIONS[role]:
        raise PermissionDenied(f"missing permission {permission}")


def env_allows(session: Session, actor: Actor, permission: Permission, environment: Environment) -> bool:
    if actor.is_operator:
        return True
    return permission in env_permissions(env_role(session, actor, environment.id), EnvironmentName(environment.name))


def require_env(session: Session, actor: Actor, permission: Permission, environment: Environment) -> None:
    """Environment permission. Not a member of the environment's organization → NotFound (never leak existence)."""
    assert permission in ENV_PERMISSIONS, f"{permission} is not an environment permission"
    if env_allows(session, actor, permission, environment):
        return
    if org_role(session, actor, environment.organization_id) is None:
        raise NotFound("not found")
    raise PermissionDenied(f"missing permission {permission} in {environment.name}")


def visible(
    session: Session, actor: Actor, permission: Permission, found: tuple[T, Environment] | None, what: str
) -> tuple[T, Environment]:
    """``found`` (an object and its environment, as a ``find`` answers) if the actor holds ``permission`` there;
    NotFound ("<what> not found") when it does not exist, and as ``require_env`` says otherwise."""
    if found is None:
        raise NotFound(f"{what} not found")
    require_env(session, actor, permission, found[1])
    return found
