"""``/platform/v1/mllp-peers``: the networks (and client certificates) a source's MLLP connections come from."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from healthway.domain.permissions import Permission
from healthway.errors import NotFound
from healthway.services import mllp_peers, sources
from healthway.storage.models import MllpPeer
from healthway.transports.http.platform.deps import (
    ActorDep,
    Cursor,
    HealthwayDep,
    Limit,
    OrganizationParam,
    environment_page,
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
    environment: str | None = Query(None, description="Only this environment (default: every readable one)"),
    organization: OrganizationParam = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    with hw.db.session() as session:
        envs, rows, next_cursor = environment_page(
            session,
            actor,
            organization_id=organization,
            environment=environment,
            permission=Permission.SOURCES_READ,
            query_for=mllp_peers.in_environments,
            model=MllpPeer,
            cursor=cursor,
            limit=limit,
        )
        return {"mllp_peers": mllp_peers.views(session, rows, envs), "next_cursor": next_cursor}


@router.post("/mllp-peers", status_code=201)
def add_peer(body: PeerCreate, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    with hw.db.session() as session:
        found = sources.find(session, body.source_id)
        if found is None:
            raise NotFound("source not found")
        source, env = found
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
        found = mllp_peers.find(session, peer_id)
        if found is None:
            raise NotFound("MLLP peer not found")
        peer, env = found
        mllp_peers.remove(session, actor=actor, peer=peer, environment=env)
