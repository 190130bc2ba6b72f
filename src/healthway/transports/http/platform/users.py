"""``/platform/v1/users``: the organization's people, their org roles and their environment roles."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from healthway.domain.permissions import EnvRole, OrgRole
from healthway.services import callers, invitations, users
from healthway.transports.http.platform.deps import ActorDep, Cursor, HealthwayDep, Limit, OrganizationParam, listing

router = APIRouter(tags=["users"])


class UserCreate(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    org_role: OrgRole = OrgRole.MEMBER


class RoleAssignment(BaseModel):
    role: EnvRole | None = Field(description="null removes the user's access to the environment")


@router.get("/users")
def list_users(
    hw: HealthwayDep, actor: ActorDep, organization: OrganizationParam = None, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    with hw.db.session() as session:
        page = users.list_page(session, actor=actor, organization_id=organization, cursor=cursor, limit=limit)
        return listing("users", page)


@router.post("/users", status_code=201)
def create_user(
    body: UserCreate, hw: HealthwayDep, actor: ActorDep, organization: OrganizationParam = None
) -> dict[str, Any]:
    """Invite someone: a pending invitation they accept themselves. The answer is the same whether or not the
    address has an account (and never holds a password)."""
    with hw.db.session() as session:
        org = callers.organization(session, actor, organization)
        pending = invitations.invite(
            session, actor=actor, organization=org, email=body.email, passwords=hw.passwords, org_role=body.org_role
        )
        return invitations.view(pending)


@router.delete("/users/{email}", status_code=204)
def remove_user(email: str, hw: HealthwayDep, actor: ActorDep, organization: OrganizationParam = None) -> None:
    """End someone's membership (their roles here go, their tokens for here are revoked), or withdraw their
    pending invitation."""
    with hw.db.session() as session:
        org = callers.organization(session, actor, organization)
        if not invitations.withdraw(session, actor=actor, organization=org, email=email):
            users.remove_member(session, actor=actor, organization=org, email=email, now=hw.clock())


@router.get("/users/{email}")
def get_user(email: str, hw: HealthwayDep, actor: ActorDep, organization: OrganizationParam = None) -> dict[str, Any]:
    with hw.db.session() as session:
        org = callers.organization(session, actor, organization)
        return users.view(users.get_member(session, actor=actor, organization=org, email=email))


@router.put("/users/{email}/roles/{environment}")
def set_role(
    email: str,
    environment: str,
    body: RoleAssignment,
    hw: HealthwayDep,
    actor: ActorDep,
    organization: OrganizationParam = None,
) -> dict[str, Any]:
    """Set (or with ``null`` remove) the user's role in one environment; answers what they gained and lost."""
    with hw.db.session() as session:
        env = callers.environment(session, actor, organization, environment)
        change = users.set_env_role(session, actor=actor, environment=env, email=email, role=body.role)
        return users.role_change_view(change)
