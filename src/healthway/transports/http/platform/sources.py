"""``/platform/v1/sources``"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from healthway.domain.permissions import Permission
from healthway.services import callers, sources
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

router = APIRouter(tags=["sources"])


class SourceCreate(BaseModel):
    environment: str
    name: str = Field(min_length=1, max_length=200)


class SourceUpdate(BaseModel):
    name: str = Field(min_length=1, max_length=200)


@router.get("/sources")
def list_sources(
    hw: HealthwayDep,
    actor: ActorDep,
    environment: EnvironmentFilter = None,
    organization: OrganizationParam = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    scope = EnvironmentScope(organization, environment)
    with hw.db.session() as session:
        return listing("sources", sources.list_page(session, actor=actor, scope=scope, cursor=cursor, limit=limit))


@router.post("/sources", status_code=201)
def create_source(
    body: SourceCreate, hw: HealthwayDep, actor: ActorDep, organization: OrganizationParam = None
) -> dict[str, Any]:
    with hw.db.session() as session:
        env = callers.environment(session, actor, organization, body.environment)
        source = sources.create(session, actor=actor, environment=env, name=body.name)
        return sources.view(source, env)


@router.get("/sources/{source_id}")
def get_source(source_id: str, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    with hw.db.session() as session:
        source, env = sources.visible(session, actor=actor, source_id=source_id, permission=Permission.SOURCES_READ)
        return sources.view(source, env)


@router.patch("/sources/{source_id}")
def update_source(source_id: str, body: SourceUpdate, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    with hw.db.session() as session:
        source, env = sources.visible(session, actor=actor, source_id=source_id, permission=Permission.SOURCES_WRITE)
        sources.rename(session, actor=actor, source=source, environment=env, name=body.name)
        return sources.view(source, env)


@router.delete("/sources/{source_id}", status_code=204)
def delete_source(source_id: str, hw: HealthwayDep, actor: ActorDep, force: bool = False) -> None:
    with hw.db.session() as session:
        source, env = sources.visible(session, actor=actor, source_id=source_id, permission=Permission.SOURCES_WRITE)
        sources.delete(session, actor=actor, source=source, environment=env, force=force)
