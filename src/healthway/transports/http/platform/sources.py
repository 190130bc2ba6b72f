"""``/platform/v1/sources``"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from healthway.domain.permissions import Permission
from healthway.errors import NotFound
from healthway.services import authz, sources
from healthway.storage.models import Source
from healthway.transports.http.platform.deps import (
    ActorDep,
    Cursor,
    HealthwayDep,
    Limit,
    OrganizationParam,
    caller_environment,
    environment_page,
)
from healthway.transports.views import source_view

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
            query_for=sources.in_environments,
            model=Source,
            cursor=cursor,
            limit=limit,
        )
        return {"sources": [source_view(s, envs[s.environment_id]) for s in rows], "next_cursor": next_cursor}


@router.post("/sources", status_code=201)
def create_source(
    body: SourceCreate, hw: HealthwayDep, actor: ActorDep, organization: OrganizationParam = None
) -> dict[str, Any]:
    with hw.db.session() as session:
        env = caller_environment(session, actor, organization, body.environment)
        source = sources.create(session, actor=actor, environment=env, name=body.name)
        return source_view(source, env)


@router.get("/sources/{source_id}")
def get_source(source_id: str, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    with hw.db.session() as session:
        source, env = _visible_source(session, actor, source_id, Permission.SOURCES_READ)
        return source_view(source, env)


@router.patch("/sources/{source_id}")
def update_source(source_id: str, body: SourceUpdate, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    with hw.db.session() as session:
        source, env = _visible_source(session, actor, source_id, Permission.SOURCES_WRITE)
        sources.rename(session, actor=actor, source=source, environment=env, name=body.name)
        return source_view(source, env)


@router.delete("/sources/{source_id}", status_code=204)
def delete_source(source_id: str, hw: HealthwayDep, actor: ActorDep, force: bool = False) -> None:
    with hw.db.session() as session:
        source, env = _visible_source(session, actor, source_id, Permission.SOURCES_WRITE)
        sources.delete(session, actor=actor, source=source, environment=env, force=force)


def _visible_source(session: Any, actor: ActorDep, source_id: str, permission: Permission) -> tuple[Source, Any]:
    found = sources.find(session, source_id)
    if found is None:
        raise NotFound("source not found")
    authz.require_env(session, actor, permission, found[1])
    return found
