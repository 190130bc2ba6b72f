"""``/platform/v1/destinations``"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from healthway.domain.permissions import Permission
from healthway.services import callers, destinations
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

router = APIRouter(tags=["destinations"])


class DestinationCreate(BaseModel):
    """Kind-specific fields: webhook ``url`` [``verification_token``]; mllp ``host``, ``port`` [``tls``
    [``ca_pem``, ``cert_pem`` + ``key_pem``: PEM text; the key is never shown again]];
    sftp ``host``, ``port``, ``username``, ``password`` or ``private_key``, ``host_key_sha256`` [``path``];
    fhir ``url`` [``token_url``, ``client_id``, ``client_secret`` [``token_auth_method``] or ``private_key``
    (PEM) [``alg``, ``kid``], ``scope``]. They may also come nested in ``config``, as answers show them, so that an
    answer sent back creates the same destination (secrets are never in answers: they must be given again)."""

    # Extra fields reach the service, which refuses the old file-path fields (ca_file, ...) instead of ignoring them.
    model_config = ConfigDict(extra="allow")

    environment: str
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["webhook", "mllp", "sftp", "fhir"]
    url: str | None = None
    verification_token: str | None = None
    host: str | None = None
    port: int | None = None
    tls: bool | None = None
    ca_pem: str | None = None
    cert_pem: str | None = None
    key_pem: str | None = None
    username: str | None = None
    password: str | None = None
    private_key: str | None = None
    path: str | None = None
    host_key_sha256: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    token_auth_method: str | None = None
    alg: str | None = None
    kid: str | None = None
    scope: str | None = None
    config: dict[str, Any] | None = None


@router.get("/destinations")
def list_destinations(
    hw: HealthwayDep,
    actor: ActorDep,
    environment: EnvironmentFilter = None,
    organization: OrganizationParam = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    scope = EnvironmentScope(organization, environment)
    with hw.db.session() as session:
        page = destinations.list_page(session, actor=actor, scope=scope, cursor=cursor, limit=limit)
        return listing("destinations", page)


@router.post("/destinations", status_code=201)
def create_destination(
    body: DestinationCreate, hw: HealthwayDep, actor: ActorDep, organization: OrganizationParam = None
) -> dict[str, Any]:
    """Answers the signing secret of a webhook destination once; it is never shown again."""
    flat = body.model_dump(exclude={"environment", "name", "kind", "config"}, exclude_none=True)
    config = (body.config or {}) | flat
    with hw.db.session() as session:
        env = callers.environment(session, actor, organization, body.environment)
        destination, secret = destinations.create(
            session,
            actor=actor,
            environment=env,
            name=body.name,
            kind=body.kind,
            config=config,
            outbound=hw.outbound.policy,
        )
        return destinations.view(destination, env) | ({"signing_secret": secret} if secret else {})


@router.get("/destinations/{destination_id}")
def get_destination(destination_id: str, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    with hw.db.session() as session:
        destination, env = destinations.visible(
            session, actor=actor, destination_id=destination_id, permission=Permission.DESTINATIONS_READ
        )
        return destinations.view(destination, env)


class Switch(BaseModel):
    enabled: bool


@router.patch("/destinations/{destination_id}")
def update_destination(destination_id: str, body: Switch, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    """``{"enabled": false}`` pauses a destination (its deliveries wait); ``true`` resumes it at once."""
    with hw.db.session() as session:
        destination, env = destinations.visible(
            session, actor=actor, destination_id=destination_id, permission=Permission.DESTINATIONS_WRITE
        )
        destinations.set_enabled(
            session, actor=actor, destination=destination, environment=env, enabled=body.enabled, now=hw.clock()
        )
        return destinations.view(destination, env)


@router.delete("/destinations/{destination_id}", status_code=204)
def delete_destination(destination_id: str, hw: HealthwayDep, actor: ActorDep) -> None:
    with hw.db.session() as session:
        destination, env = destinations.visible(
            session, actor=actor, destination_id=destination_id, permission=Permission.DESTINATIONS_WRITE
        )
        destinations.delete(session, actor=actor, destination=destination, environment=env)
