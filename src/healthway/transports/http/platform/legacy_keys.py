"""Legacy API keys: create for a source, rotate the secret, and list who still uses them (migration tracking)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from healthway.domain.permissions import Permission
from healthway.errors import NotFound
from healthway.services import legacy_keys, sources
from healthway.transports.http.platform.deps import (
    ActorDep,
    HealthwayDep,
    OrganizationParam,
    readable_environments,
)

router = APIRouter(tags=["legacy keys"])


@router.post("/sources/{source_id}/legacy-key", status_code=201)
def create_legacy_key(source_id: str, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    with hw.db.session() as session:
        found = sources.find(session, source_id)
        if found is None:
            raise NotFound("source not found")
        key, secret = legacy_keys.create(session, actor=actor, source=found[0], environment=found[1])
        return {"api_key": key.api_key, "secret": secret}


@router.post("/legacy-keys/{api_key}/rotate-secret")
def rotate_legacy_secret(api_key: str, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    with hw.db.session() as session:
        key = legacy_keys.find(session, api_key)
        if key is None:
            raise NotFound("legacy key not found")
        return {
            "api_key": key.api_key,
            "secret": legacy_keys.rotate_secret(session, actor=actor, key=key, now=hw.clock()),
        }


@router.get("/legacy-keys")
def list_legacy_keys(
    hw: HealthwayDep,
    actor: ActorDep,
    environment: str | None = Query(None, description="Only this environment (default: every readable one)"),
    organization: OrganizationParam = None,
) -> dict[str, Any]:
    """Sources that still hold a legacy key, with when each was last used: an empty list means migrated."""
    with hw.db.session() as session:
        envs = readable_environments(
            session, actor, organization_id=organization, environment=environment, permission=Permission.KEYS_READ
        )
        rows = [row for env in envs for row in legacy_keys.legacy_sources(session, actor=actor, environment=env)]
        return {"legacy_keys": [legacy_keys.view(key, source) for source, key in rows], "next_cursor": None}
