"""``/platform/v1/mllp-peers``: the networks (and client certificates) a source's MLLP connections come from."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from healthway.domain.permissions import Permission
from healthway.services import mllp_peers, sources
from healthway.services.paging import EnvironmentScope
from healthway.transports.http.platform.deps import (
    ActorDep,
    Cursor,
    EnvironmentFilter,
    HealthwayDep,
    Limit,
    OrganizationParam,
    listing,
)

router = APIRouter(tags=["mllp-peers"])


class PeerCreate(BaseModel):
    source_id: str = Field(description="The source these connections speak for")
    cidr: str = Field(max_length=64, description="A network such as 10.1.2.0/24, or one address")
    client_cert_sha256: str | None = Field(
        None, max_length=100, description="Also require a TLS client certificate with this SHA-256 fingerprint"
    )


@router.get("/mllp-peers")
def list_peers(
    hw: HealthwayDep,
    actor: ActorDep,
    environment: EnvironmentFilter = None,
    organization: OrganizationParam = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    scope = EnvironmentScope(organization, environment)
    with hw.db.session() as session:
        page = mllp_peers.list_page(session, actor=actor, scope=scope, cursor=cursor, limit=limit)
        return listing("mllp_peers", page)


@router.post("/mllp-peers", status_code=201)
def add_peer(body: PeerCreate, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    with hw.db.session() as session:
        source, env = sources.visible(
            session, actor=actor, source_id=body.source_id, permission=Permission.SOURCES_WRITE
        )
        peer = mllp_peers.add(
            session,
            actor=actor,
            source=source,
            environment=env,
            cidr=body.cidr,
            client_cert_sha256=body.client_cert_sha256,
        )
        return mllp_peers.view(peer, env)


@router.delete("/mllp-peers/{peer_id}", status_code=204)
def remove_peer(peer_id: str, hw: HealthwayDep, actor: ActorDep) -> None:
    with hw.db.session() as session:
        peer, env = mllp_peers.visible(session, actor=actor, peer_id=peer_id, permission=Permission.SOURCES_WRITE)
        mllp_peers.remove(session, actor=actor, peer=peer, environment=env)
