"""``/platform/v1/users``: the organization's people, their org roles and their environment roles."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from healthway.domain.permissions import EnvRole, OrgRole, Permission
from healthway.services import authz, invitations, organizations, users
from healthway.storage.models import User
from healthway.storage.pagination import page
from healthway.transports.account_views import invitation_view, role_change_view, user_view
from healthway.transports.http.platform.deps import (
    ActorDep,
    Cursor,
    HealthwayDep,
    Limit,
    OrganizationParam,
    caller_organization,
)

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
        org = caller_organization(session, actor, organization)
        authz.require_org(session, actor, Permission.USERS_READ, org.id)
        rows, next_cursor = page(
            session,
            users.members_query(org),
            created_at=User.created_at,
            row_id=User.id,
            cursor=cursor,
            limit=limit,
        )
        members = users.list_members(session, actor=actor, organization=org, users=rows)
        return {"users": [user_view(m) for m in members], "next_cursor": next_cursor}


@router.post("/users", status_code=201)
def create_user(
    body: UserCreate, hw: HealthwayDep, actor: ActorDep, organization: OrganizationParam = None
) -> dict[str, Any]:
    """Invite someone: a pending invitation they accept themselves. The answer is the same whether or not the
    address has an account (and never holds a password)."""
    with hw.db.session() as session:
        org = caller_organization(session, actor, organization)
        pending = invitations.invite(
            session, actor=actor, organization=org, email=body.email, passwords=hw.passwords, org_role=body.org_role
        )
        return invitation_view(pending)


@router.delete("/users/{email}", status_code=204)
def remove_user(email: str, hw: HealthwayDep, actor: ActorDep, organization: OrganizationParam = None) -> None:
    """End someone's membership (their roles here go, their tokens for here are revoked), or withdraw their
    pending invitation."""
    with hw.db.session() as session:
        org = caller_organization(session, actor, organization)
        if not invitations.withdraw(session, actor=actor, organization=org, email=email):
            users.remove_member(session, actor=actor, organization=org, email=email, now=hw.clock())


@router.get("/users/{email}")
def get_user(email: str, hw: HealthwayDep, actor: ActorDep, organization: OrganizationParam = None) -> dict[str, Any]:
    with hw.db.session() as session:
        org = caller_organization(session, actor, organization)
        return user_view(users.get_member(session, actor=actor, organization=org, email=email))


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
        org = caller_organization(session, actor, organization)
        env = organizations.environment(session, org.id, environment)
        change = users.set_env_role(session, actor=actor, environment=env, email=email, role=body.role)
        return role_change_view(change)
