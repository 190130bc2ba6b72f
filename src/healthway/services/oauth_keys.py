"""OAuth API keys: clients of the token endpoint, each in one environment, optionally limited to some sources.

A key created without sources covers every source of its environment (``all_sources``, stored explicitly). A
key created with sources covers those only; when the last of them is deleted it covers nothing and is disabled
(``usable``): the token endpoint refuses it and its tokens stop working.

A key holds a JWK Set (by value) or a JWKS URL, and a pinned signing algorithm. ``generate`` creates the key pair
here and returns the private half once; only the public JWK is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain import jwk, scopes
from healthway.domain.actors import Actor
from healthway.domain.audit import AuditAction
from healthway.domain.permissions import Permission
from healthway.errors import InvalidRequest, InvalidScope, NotFound
from healthway.services import audit, authz, callers, sources
from healthway.services.jwks_fetcher import check_url
from healthway.services.paging import EnvironmentScope, Page, View
from healthway.storage.models import Environment, OAuthKey, OAuthKeySource, Source


@dataclass(frozen=True)
class KeyMaterial:
    """Exactly one way of giving the public keys."""

    generate: bool = False
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    alg: str | None = None  # default: RS384, or what a JWK Set implies


@dataclass(frozen=True)
class NewKey:
    key: OAuthKey
    environment: Environment
    source_ids: list[str]
    generated: jwk.GeneratedKey | None


def _resolve_material(material: KeyMaterial) -> tuple[str, dict[str, Any] | None, str | None, jwk.GeneratedKey | None]:
    """(alg, jwks, jwks_url, generated key)."""
    given = [material.generate, material.jwks is not None, material.jwks_url is not None]
    if sum(given) != 1:
        raise InvalidRequest("give exactly one of generate, jwks or jwks_url")
    if material.generate:
        generated = jwk.generate(material.alg or jwk.DEFAULT_ALG)
        return generated.private_jwk["alg"], {"keys": [generated.public_jwk]}, None, generated
    if material.jwks is not None:
        alg = jwk.check_alg(material.alg or jwk.infer_alg(material.jwks))
        return alg, jwk.validate_set(material.jwks, alg), None, None
    assert material.jwks_url is not None
    return jwk.check_alg(material.alg or jwk.DEFAULT_ALG), None, check_url(material.jwks_url), None


def _allowed_scopes(requested: list[str] | None) -> list[str]:
    try:
        return scopes.validate_allowed(requested)
    except InvalidScope as exc:  # here it is a management request, not an OAuth one
        raise InvalidRequest(exc.message) from None


def _check_sources(session: Session, environment: Environment, source_ids: Sequence[str]) -> list[str]:
    unique = list(dict.fromkeys(source_ids))
    for source_id in unique:
        source = session.get(Source, source_id) if len(source_id) <= 64 else None
        if source is None or source.environment_id != environment.id:
            raise NotFound("source not found in this environment")
    return unique


def create(
    session: Session,
    *,
    actor: Actor,
    environment: Environment,
    material: KeyMaterial,
    source_ids: Sequence[str] = (),
    name: str = "",
    allowed_scopes: list[str] | None = None,
) -> NewKey:
    authz.require_env(session, actor, Permission.KEYS_WRITE, environment)
    name = name.strip()
    if len(name) > 200:
        raise InvalidRequest("key name must be at most 200 characters")
    sources = _check_sources(session, environment, source_ids)
    alg, jwks, jwks_url, generated = _resolve_material(material)
    key = OAuthKey(
        environment_id=environment.id,
        name=name,
        alg=alg,
        jwks=jwks,
        jwks_url=jwks_url,
        scopes=_allowed_scopes(allowed_scopes),
        all_sources=not sources,
    )
    session.add(key)
    session.flush()
    session.add_all(OAuthKeySource(key_id=key.id, source_id=s) for s in sources)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.OAUTH_KEY_CREATE,
        organization_id=environment.organization_id,
        subject_type="oauth_key",
        subject_id=key.id,
        summary={
            "client_id": key.client_id,
            "name": name,
            "alg": alg,
            "environment": environment.name,
            "sources": sources,
            "kids": kids(key),
            "jwks_url": jwks_url,
            "generated": generated is not None,
        },
    )
    return NewKey(key, environment, sources, generated)


def kids(key: OAuthKey) -> list[str]:
    return [k["kid"] for k in (key.jwks or {}).get("keys", [])]


def usable() -> sa.ColumnElement[bool]:
    """The WHERE clause of keys that can authenticate: not revoked, and covering at least one source."""
    listed = sa.exists().where(OAuthKeySource.key_id == OAuthKey.id)
    return sa.and_(OAuthKey.revoked_at.is_(None), sa.or_(OAuthKey.all_sources, listed))


def source_ids(session: Session, key: OAuthKey) -> list[str]:
    return list(session.scalars(sa.select(OAuthKeySource.source_id).where(OAuthKeySource.key_id == key.id)))


def list_page(
    session: Session, *, actor: Actor, scope: EnvironmentScope, cursor: str | None = None, limit: int = 100
) -> Page[View]:
    """Keys of the scope's environments that the actor may read, oldest first."""
    envs, rows, next_cursor = callers.environment_rows(
        session,
        actor=actor,
        scope=scope,
        permission=Permission.KEYS_READ,
        query_for=in_environments,
        created_at=OAuthKey.created_at,
        row_id=OAuthKey.id,
        cursor=cursor,
        limit=limit,
    )
    return Page([describe(k, envs[k.environment_id], source_ids(session, k)) for k in rows], next_cursor)


def target_environment(
    session: Session, *, actor: Actor, organization_id: str | None, environment: str | None, source_ids: list[str]
) -> Environment:
    """The environment a new key is for: the one named, else the first listed source's (which implies it)."""
    if environment:
        return callers.environment(session, actor, organization_id, environment)
    if not source_ids:
        raise InvalidRequest("give the environment or the sources the key may send as")
    found = sources.find(session, source_ids[0])
    if found is None:
        raise NotFound("source not found")
    return found[1]


def visible(session: Session, *, actor: Actor, key_id: str) -> tuple[OAuthKey, Environment]:
    """The key (by id or client_id) and its environment, if the actor may read keys there; else NotFound (or 403):
    other organizations' keys stay invisible."""
    return authz.visible(session, actor, Permission.KEYS_READ, find(session, key_id), "OAuth key")


def in_environments(environment_ids: Sequence[str]) -> sa.Select[OAuthKey]:
    return sa.select(OAuthKey).where(OAuthKey.environment_id.in_(environment_ids))


def find(session: Session, key_id: str) -> tuple[OAuthKey, Environment] | None:
    """By id or client_id."""
    if len(key_id) > 64:
        return None
    row = session.execute(
        sa.select(OAuthKey, Environment)
        .join(Environment)
        .where(sa.or_(OAuthKey.id == key_id, OAuthKey.client_id == key_id))
    ).first()
    return (row[0], row[1]) if row else None


def delete(session: Session, *, actor: Actor, key: OAuthKey, environment: Environment) -> None:
    """Deletes the key; its access tokens go with it, so they stop working at once."""
    authz.require_env(session, actor, Permission.KEYS_WRITE, environment)
    session.delete(key)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.OAUTH_KEY_DELETE,
        organization_id=environment.organization_id,
        subject_type="oauth_key",
        subject_id=key.id,
        summary={"client_id": key.client_id, "name": key.name},
    )


def describe(key: OAuthKey, environment: Environment, sources: list[str]) -> dict[str, Any]:
    """The wire shape of a key (CLI ``--json`` and Platform API), without private material."""
    key_ids = kids(key)
    return {
        "id": key.id,
        "client_id": key.client_id,
        "name": key.name,
        "environment": environment.name,
        "sources": sources,
        "all_sources": key.all_sources,
        "disabled": not key.all_sources and not sources,  # its last listed source was deleted
        "alg": key.alg,
        "kid": key_ids[0] if key_ids else None,
        "kids": key_ids,
        "jwks_url": key.jwks_url,
        "scopes": key.scopes,
        "created_at": key.created_at.isoformat() if key.created_at else None,
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
    }


def describe_new(created: NewKey) -> dict[str, Any]:
    """``describe`` plus, for a generated key, the private key (PEM and JWK): shown this once, never stored."""
    view = describe(created.key, created.environment, created.source_ids)
    if created.generated is not None:
        view["private_key_pem"] = created.generated.private_key_pem
        view["private_jwk"] = created.generated.private_jwk
    return view
