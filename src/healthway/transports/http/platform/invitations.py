"""``/platform/v1/invitations``: the caller's own pending invitations, to accept or decline."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from healthway.services import invitations
from healthway.transports.http.platform.deps import ActorDep, HealthwayDep, listing

router = APIRouter(tags=["invitations"])


@router.get("/invitations")
def list_invitations(hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    """Invitations made to the caller and not yet answered."""
    with hw.db.read_session() as session:
        return listing("invitations", invitations.list_page(session, actor=actor))


@router.post("/invitations/{invitation_id}/accept")
def accept_invitation(invitation_id: str, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    """Join the organization; answers ``{"organization_id", "org_role"}``. Make a token bound to it next
    (``POST /platform/v1/tokens`` with ``{"organization": ID}``)."""
    with hw.db.session() as session:
        membership = invitations.accept(session, actor=actor, invitation_id=invitation_id)
        return {"organization_id": membership.organization_id, "org_role": membership.role}


@router.post("/invitations/{invitation_id}/decline", status_code=204)
def decline_invitation(invitation_id: str, hw: HealthwayDep, actor: ActorDep) -> None:
    with hw.db.session() as session:
        invitations.decline(session, actor=actor, invitation_id=invitation_id)
