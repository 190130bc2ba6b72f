"""Shared dependencies of the Platform API: the caller (a user, by personal access token) and paging."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request

from healthway.domain.actors import Actor
from healthway.errors import Unauthenticated
from healthway.runtime import Healthway
from healthway.services import personal_tokens
from healthway.services.paging import Page


def get_healthway(request: Request) -> Healthway:
    hw: Healthway = request.app.state.healthway
    return hw


def current_actor(request: Request) -> Actor:
    """The user behind ``Authorization: Bearer hwpat_...``; 401 for anything else."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("a personal access token is required: Authorization: Bearer hwpat_...")
    hw = get_healthway(request)
    address = request.client.host if request.client else None
    with hw.db.session() as session:
        actor = personal_tokens.actor_for(session, token.strip(), now=hw.clock(), address=address)
    if actor is None:
        raise Unauthenticated("invalid, expired or revoked personal access token")
    return actor


def listing(key: str, page: Page[Any]) -> dict[str, Any]:
    """A list answer: ``{key: [...], "next_cursor": ...}``."""
    return {key: page.items, "next_cursor": page.next_cursor}


HealthwayDep = Annotated[Healthway, Depends(get_healthway)]
ActorDep = Annotated[Actor, Depends(current_actor)]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]
OrganizationParam = Annotated[
    str | None, Query(alias="organization", description="Organization ID; needed only when you belong to several")
]
EnvironmentFilter = Annotated[str | None, Query(description="Only this environment (default: every readable one)")]
