"""``/platform/v1/subscriptions``"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import AliasChoices, BaseModel, Field
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor
from healthway.domain.permissions import Permission
from healthway.errors import NotFound
from healthway.services import authz, destinations, sources, subscriptions
from healthway.storage.models import Environment, Subscription
from healthway.transports.http.platform.deps import (
    ActorDep,
    Cursor,
    HealthwayDep,
    Limit,
    OrganizationParam,
    environment_page,
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
    environment: str | None = Query(None, description="Only this environment (default: every readable one)"),
    source: str | None = Query(default=None, description="Only this source's subscriptions"),
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
            permission=Permission.SUBSCRIPTIONS_READ,
            query_for=lambda ids: subscriptions.in_environments(ids, source),
            model=Subscription,
            cursor=cursor,
            limit=limit,
        )
        env_of = subscriptions.environment_ids(session, rows)
        views = [subscriptions.view(s, envs[env_of[s.id]]) for s in rows]
        return {"subscriptions": views, "next_cursor": next_cursor}


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
        subscription, env = _writable(session, actor, subscription_id)
        subscriptions.set_enabled(
            session, actor=actor, subscription=subscription, environment=env, enabled=body.enabled
        )
        return subscriptions.view(subscription, env)


@router.delete("/subscriptions/{subscription_id}", status_code=204)
def delete_subscription(subscription_id: str, hw: HealthwayDep, actor: ActorDep) -> None:
    with hw.db.session() as session:
        subscription, env = _writable(session, actor, subscription_id)
        subscriptions.delete(session, actor=actor, subscription=subscription, environment=env)


def _writable(session: Session, actor: Actor, subscription_id: str) -> tuple[Subscription, Environment]:
    found = subscriptions.find(session, subscription_id)
    if found is None:
        raise NotFound("subscription not found")
    authz.require_env(session, actor, Permission.SUBSCRIPTIONS_WRITE, found[1])
    return found
