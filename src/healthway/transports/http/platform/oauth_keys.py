"""``/platform/v1/oauth-keys``"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from healthway.services import oauth_keys
from healthway.services.oauth_keys import KeyMaterial
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

router = APIRouter(tags=["oauth-keys"])


class OAuthKeyCreate(BaseModel):
    """Give ``environment``, or ``sources`` (which imply their environment), or both; and exactly one of
    ``generate``, ``jwks`` or ``jwks_url``."""

    environment: str | None = None
    sources: list[str] = Field(default_factory=list, max_length=100)
    generate: bool = False
    alg: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    name: str = Field(default="", max_length=200)
    scopes: list[str] | None = Field(default=None, max_length=50)


@router.get("/oauth-keys")
def list_keys(
    hw: HealthwayDep,
    actor: ActorDep,
    environment: EnvironmentFilter = None,
    organization: OrganizationParam = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    scope = EnvironmentScope(organization, environment)
    with hw.db.session() as session:
        return listing(
            "oauth_keys", oauth_keys.list_page(session, actor=actor, scope=scope, cursor=cursor, limit=limit)
        )


@router.post("/oauth-keys", status_code=201)
def create_key(
    body: OAuthKeyCreate, hw: HealthwayDep, actor: ActorDep, organization: OrganizationParam = None
) -> dict[str, Any]:
    """201 with the key; a generated private key (``private_key_pem``, ``private_jwk``) is in this answer only."""
    material = KeyMaterial(generate=body.generate, jwks=body.jwks, jwks_url=body.jwks_url, alg=body.alg)
    with hw.db.session() as session:
        env = oauth_keys.target_environment(
            session, actor=actor, organization_id=organization, environment=body.environment, source_ids=body.sources
        )
        created = oauth_keys.create(
            session,
            actor=actor,
            environment=env,
            material=material,
            source_ids=body.sources,
            name=body.name,
            allowed_scopes=body.scopes,
        )
        return oauth_keys.describe_new(created)


@router.delete("/oauth-keys/{key_id}", status_code=204)
def delete_key(key_id: str, hw: HealthwayDep, actor: ActorDep) -> None:
    with hw.db.session() as session:
        key, env = oauth_keys.visible(session, actor=actor, key_id=key_id)
        oauth_keys.delete(session, actor=actor, key=key, environment=env)
