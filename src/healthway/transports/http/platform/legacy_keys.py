"""Legacy API keys: create for a source, rotate the secret, and list who still uses them (migration tracking)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from healthway.errors import NotFound
from healthway.services import legacy_keys, sources
from healthway.services.paging import EnvironmentScope
from healthway.transports.http.platform.deps import (
    ActorDep,
    EnvironmentFilter,
    HealthwayDep,
    OrganizationParam,
    listing,
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
    environment: EnvironmentFilter = None,
    organization: OrganizationParam = None,
) -> dict[str, Any]:
    """Sources that still hold a legacy key, with when each was last used: an empty list means migrated."""
    scope = EnvironmentScope(organization, environment)
    with hw.db.session() as session:
        return listing("legacy_keys", legacy_keys.list_page(session, actor=actor, scope=scope))
