"""``/platform/v1/oauth-keys``"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor
from healthway.domain.permissions import Permission
from healthway.errors import InvalidRequest, NotFound
from healthway.services import authz, oauth_keys, sources
from healthway.services.oauth_keys import KeyMaterial
from healthway.storage.models import Environment, OAuthKey
from healthway.transports.http.platform.deps import (
    ActorDep,
    Cursor,
    HealthwayDep,
    Limit,
    OrganizationParam,
    caller_environment,
    environment_page,
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


def _environment(session: Session, actor: Actor, organization: str | None, body: OAuthKeyCreate) -> Environment:
    if body.environment:
        return caller_environment(session, actor, organization, body.environment)
    if not body.sources:
        raise InvalidRequest("give the environment or the sources the key may send as")
    found = sources.find(session, body.sources[0])
    if found is None:
        raise NotFound("source not found")
    return found[1]


@router.get("/oauth-keys")
def list_keys(
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
            permission=Permission.KEYS_READ,
            query_for=oauth_keys.in_environments,
            model=OAuthKey,
            cursor=cursor,
            limit=limit,
        )
        views = [oauth_keys.describe(k, envs[k.environment_id], oauth_keys.source_ids(session, k)) for k in rows]
        return {"oauth_keys": views, "next_cursor": next_cursor}


@router.post("/oauth-keys", status_code=201)
def create_key(
    body: OAuthKeyCreate, hw: HealthwayDep, actor: ActorDep, organization: OrganizationParam = None
) -> dict[str, Any]:
    """201 with the key; a generated private key (``private_key_pem``, ``private_jwk``) is in this answer only."""
    material = KeyMaterial(generate=body.generate, jwks=body.jwks, jwks_url=body.jwks_url, alg=body.alg)
    with hw.db.session() as session:
        env = _environment(session, actor, organization, body)
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
        found = oauth_keys.find(session, key_id)
        if found is None:
            raise NotFound("OAuth key not found")
        key, env = found
        authz.require_env(session, actor, Permission.KEYS_READ, env)  # other organizations' keys stay invisible
        oauth_keys.delete(session, actor=actor, key=key, environment=env)
