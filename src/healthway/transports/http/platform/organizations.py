"""``/platform/v1/organizations`` and ``/platform/v1/environments``: where the caller works, with which roles."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from healthway.domain.environments import EnvironmentName
from healthway.domain.permissions import Permission
from healthway.errors import NotFound
from healthway.services import authz, organizations
from healthway.transports.account_views import environment_view, organization_view
from healthway.transports.http.platform.deps import ActorDep, HealthwayDep, OrganizationParam, caller_organization

router = APIRouter(tags=["organizations"])


class OrganizationUpdate(BaseModel):
    allow_legacy_keys: bool


@router.get("/organizations")
def list_organizations(hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    """The organizations the caller belongs to, with the caller's org role in each."""
    with hw.db.session() as session:
        orgs = sorted(organizations.memberships_of(session, actor).values(), key=lambda o: (o.created_at, o.id))
        views = [organization_view(org, authz.org_role(session, actor, org.id)) for org in orgs]
        return {"organizations": views, "next_cursor": None}


@router.get("/organizations/{organization_id}")
def get_organization(organization_id: str, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    with hw.db.session() as session:
        authz.require_org(session, actor, Permission.ORG_READ, organization_id)
        org = organizations.get(session, organization_id)
        if org is None:
            raise NotFound("organization not found")
        return organization_view(org, authz.org_role(session, actor, org.id))


@router.patch("/organizations/{organization_id}")
def update_organization(
    organization_id: str, body: OrganizationUpdate, hw: HealthwayDep, actor: ActorDep
) -> dict[str, Any]:
    """Organization settings; owners only."""
    with hw.db.session() as session:
        authz.require_org(session, actor, Permission.ORG_READ, organization_id)  # 404 for non-members first
        org = organizations.get(session, organization_id)
        if org is None:
            raise NotFound("organization not found")
        organizations.set_allow_legacy_keys(session, actor=actor, organization=org, allow=body.allow_legacy_keys)
        return organization_view(org, authz.org_role(session, actor, org.id))


@router.get("/environments")
def list_environments(hw: HealthwayDep, actor: ActorDep, organization: OrganizationParam = None) -> dict[str, Any]:
    """The organization's three environments, with the caller's role in each (null: no access)."""
    order = list(EnvironmentName)
    with hw.db.session() as session:
        org = caller_organization(session, actor, organization)
        authz.require_org(session, actor, Permission.ORG_READ, org.id)
        envs = sorted(organizations.environments(session, org.id), key=lambda e: order.index(EnvironmentName(e.name)))
        views = [environment_view(env, authz.env_role(session, actor, env.id)) for env in envs]
        return {"environments": views, "next_cursor": None}
