"""``/platform/v1/organizations`` and ``/platform/v1/environments``: where the caller works, with which roles."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from healthway.services import organizations
from healthway.transports.http.platform.deps import ActorDep, HealthwayDep, OrganizationParam, listing

router = APIRouter(tags=["organizations"])


class OrganizationUpdate(BaseModel):
    allow_legacy_keys: bool


@router.get("/organizations")
def list_organizations(hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    """The organizations the caller belongs to, with the caller's org role in each."""
    with hw.db.session() as session:
        return listing("organizations", organizations.list_page(session, actor=actor))


@router.get("/organizations/{organization_id}")
def get_organization(organization_id: str, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    with hw.db.session() as session:
        org = organizations.visible(session, actor=actor, organization_id=organization_id)
        return organizations.caller_view(session, actor=actor, organization=org)


@router.patch("/organizations/{organization_id}")
def update_organization(
    organization_id: str, body: OrganizationUpdate, hw: HealthwayDep, actor: ActorDep
) -> dict[str, Any]:
    """Organization settings; owners only."""
    with hw.db.session() as session:
        org = organizations.visible(session, actor=actor, organization_id=organization_id)  # 404 for non-members first
        organizations.set_allow_legacy_keys(session, actor=actor, organization=org, allow=body.allow_legacy_keys)
        return organizations.caller_view(session, actor=actor, organization=org)


@router.get("/environments")
def list_environments(hw: HealthwayDep, actor: ActorDep, organization: OrganizationParam = None) -> dict[str, Any]:
    """The organization's three environments, with the caller's role in each (null: no access)."""
    with hw.db.session() as session:
        return listing(
            "environments", organizations.environments_page(session, actor=actor, organization_id=organization)
        )
