"""``/platform/v1/subscriptions``"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import AliasChoices, BaseModel, Field

from healthway.domain.permissions import Permission
from healthway.errors import NotFound
from healthway.services import authz, destinations, sources, subscriptions
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

router = APIRouter(tags=["subscriptions"])
FilterList = list[str]


class SubscriptionCreate(BaseModel):
    """Named as the answer names them, so that an answer sent back creates the same subscription; ``source`` and
    ``destination`` are accepted too (the first published spelling)."""

    source_id: str = Field(
        min_length=1, max_length=64, validation_alias=AliasChoices("source_id", "source"), description="Source ID"
    )
    destination_id: str = Field(
        min_length=1,
        max_length=64,
        validation_alias=AliasChoices("destination_id", "destination"),
        description="Destination ID",
    )
    data_models: FilterList = Field(default_factory=list)
    event_types: FilterList = Field(default_factory=list)
    message_types: FilterList = Field(default_factory=list, description="HL7v2 MSH-9: ADT^A01 or ADT^*")
    ordering: Literal["fifo", "parallel"] = "fifo"


@router.get("/subscriptions")
def list_subscriptions(
    hw: HealthwayDep,
    actor: ActorDep,
    environment: EnvironmentFilter = None,
    source: str | None = Query(default=None, description="Only this source's subscriptions"),
    organization: OrganizationParam = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    scope = EnvironmentScope(organization, environment)
    with hw.db.session() as session:
        page = subscriptions.list_page(session, actor=actor, scope=scope, source_id=source, cursor=cursor, limit=limit)
        return listing("subscriptions", page)


@router.post("/subscriptions", status_code=201)
def create_subscription(body: SubscriptionCreate, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    with hw.db.session() as session:
        found_source = sources.find(session, body.source_id)
        found_destination = destinations.find(session, body.destination_id)
        if found_source is None:
            raise NotFound("source not found")
        source, env = found_source
        authz.require_env(session, actor, Permission.SUBSCRIPTIONS_WRITE, env)
        if found_destination is None or found_destination[1].organization_id != env.organization_id:
            raise NotFound("destination not found")
        subscription = subscriptions.create(
            session,
            actor=actor,
            source=source,
            destination=found_destination[0],
            environment=env,
            data_models=body.data_models,
            event_types=body.event_types,
            message_types=body.message_types,
            ordering=body.ordering,
        )
        return subscriptions.view(subscription, env)


class SubscriptionUpdate(BaseModel):
    enabled: bool


@router.patch("/subscriptions/{subscription_id}")
def update_subscription(
    subscription_id: str, body: SubscriptionUpdate, hw: HealthwayDep, actor: ActorDep
) -> dict[str, Any]:
    """``{"enabled": false}``: new logs are no longer routed to it (queued deliveries are still sent)."""
    with hw.db.session() as session:
        subscription, env = subscriptions.visible(
            session, actor=actor, subscription_id=subscription_id, permission=Permission.SUBSCRIPTIONS_WRITE
        )
        subscriptions.set_enabled(
            session, actor=actor, subscription=subscription, environment=env, enabled=body.enabled
        )
        return subscriptions.view(subscription, env)


@router.delete("/subscriptions/{subscription_id}", status_code=204)
def delete_subscription(subscription_id: str, hw: HealthwayDep, actor: ActorDep) -> None:
    with hw.db.session() as session:
        subscription, env = subscriptions.visible(
            session, actor=actor, subscription_id=subscription_id, permission=Permission.SUBSCRIPTIONS_WRITE
        )
        subscriptions.delete(session, actor=actor, subscription=subscription, environment=env)
