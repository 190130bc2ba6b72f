"""Bearer tokens for the data endpoints, from OAuth keys (300 s) or legacy keys (24 h).

A token is bound to one environment and to the sources its key may send as. That set is derived from the key
at each use, so narrowing or deleting a key takes effect at once: a key limited to listed sources whose last
one was deleted covers nothing, so its tokens stop working. A token issued from a legacy key stops working
while its organization has legacy keys turned off. What a token may do is its SMART scope (``Grant.require``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain import scopes
from healthway.domain.secrets import SecretKind, digest, has_kind, new_secret
from healthway.errors import InvalidRequest, LegacyKeysDisabled, PermissionDenied
from healthway.storage.models import (
    AccessToken,
    Environment,
    LegacyKey,
    OAuthKey,
    OAuthKeySource,
    Organization,
    Source,
)

MAX_TOKEN_LENGTH = 200


@dataclass(frozen=True)
class SendingSource:
    """The source a request sends as: a plain value that transports may hold (no database object)."""

    id: str
    name: str
    environment_id: str


@dataclass(frozen=True)
class Grant:
    """What a valid bearer token allows."""

    environment: Environment
    scope: str
    expires_at: datetime
    oauth_key_id: str | None
    legacy_api_key: str | None
    source_ids: frozenset[str] | None  # None: every source of the environment

    def covers(self, source_id: str) -> bool:
        return self.source_ids is None or source_id in self.source_ids

    def require(self, *needs: scopes.Need) -> None:
        """Raise InsufficientScope unless the token's scopes allow every need. Legacy tokens have no scopes
        (legacy keys predate them) and keep the full access they always had."""
        if self.legacy_api_key is None:
            scopes.require(self.scope, *needs)


def issue(
    session: Session,
    *,
    environment_id: str,
    now: datetime,
    ttl: timedelta,
    scope: str = "",
    oauth_key_id: str | None = None,
    legacy_api_key: str | None = None,
    family_id: str | None = None,
) -> tuple[str, AccessToken]:
    """(the token in clear, its row). Exactly one of ``oauth_key_id`` and ``legacy_api_key`` is given."""
    assert (oauth_key_id is None) != (legacy_api_key is None)
    token = new_secret(SecretKind.ACCESS_TOKEN)
    row = AccessToken(
        token_digest=digest(token),
        environment_id=environment_id,
        oauth_key_id=oauth_key_id,
        legacy_api_key=legacy_api_key,
        family_id=family_id,
        scope=scope,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(row)
    return token, row


def find(session: Session, token: str) -> AccessToken | None:
    if not has_kind(token, SecretKind.ACCESS_TOKEN) or len(token) > MAX_TOKEN_LENGTH:
        return None
    return session.get(AccessToken, digest(token))


# The hot path of every data request reads with these statements, built once (building a statement costs more
# than running it on SQLite) and run as Core on a plain connection.
_GRANT = (
    sa.select(
        AccessToken.expires_at,
        AccessToken.revoked_at,
        AccessToken.scope,
        AccessToken.oauth_key_id,
        AccessToken.legacy_api_key,
        Environment.id,
        Environment.name,
        Environment.organization_id,
        OAuthKey.revoked_at.label("key_revoked_at"),
        OAuthKey.all_sources,
        LegacyKey.source_id.label("legacy_source_id"),
        Organization.allow_legacy_keys,
    )
    .join(Environment, Environment.id == AccessToken.environment_id)
    .join(Organization, Organization.id == Environment.organization_id)
    .outerjoin(OAuthKey, OAuthKey.id == AccessToken.oauth_key_id)
    .outerjoin(LegacyKey, LegacyKey.api_key == AccessToken.legacy_api_key)
    .where(AccessToken.token_digest == sa.bindparam("digest"))
)
_KEY_SOURCES = sa.select(OAuthKeySource.source_id).where(OAuthKeySource.key_id == sa.bindparam("key_id"))
_SOURCE = sa.select(Source.id, Source.name, Source.environment_id).where(Source.id == sa.bindparam("source_id"))
_TWO_SOURCES = sa.select(Source.id).where(Source.environment_id == sa.bindparam("environment_id")).limit(2)

Reader = Session | sa.Connection


def _connection(reader: Reader) -> sa.Connection:
    return reader.connection() if isinstance(reader, Session) else reader


def authenticate(reader: Reader, token: str, *, now: datetime) -> Grant | None:
    """The token's grant, or None when it is unknown, expired or revoked, or its key is gone, revoked or left
    without sources. A legacy token while its organization has legacy keys off raises LegacyKeysDisabled.

    One joined query (plus one for keys limited to listed sources).
    """
    if not has_kind(token, SecretKind.ACCESS_TOKEN) or len(token) > MAX_TOKEN_LENGTH:
        return None
    db = _connection(reader)
    row = db.execute(_GRANT, {"digest": digest(token)}).first()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if row.oauth_key_id is not None:
        if row.key_revoked_at is not None:
            return None
        source_ids = None if row.all_sources else _key_sources(db, row.oauth_key_id)
        if source_ids == frozenset():
            return None  # limited to listed sources, and the last of them was deleted: the key is disabled
    elif row.legacy_source_id is not None:
        if not row.allow_legacy_keys:
            raise LegacyKeysDisabled()
        source_ids = frozenset({row.legacy_source_id})
    else:
        return None  # its key is gone
    # A detached Environment: the grant outlives the connection that read it.
    environment = Environment(id=row.id, name=row.name, organization_id=row.organization_id)
    return Grant(environment, row.scope, row.expires_at, row.oauth_key_id, row.legacy_api_key, source_ids)


def _key_sources(db: sa.Connection, key_id: str) -> frozenset[str]:
    return frozenset(db.execute(_KEY_SOURCES, {"key_id": key_id}).scalars())


def revoke(session: Session, token: str, *, now: datetime) -> bool:
    row = find(session, token)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = now
    return True


def select_source(reader: Reader, grant: Grant, requested: str | None) -> SendingSource:
    """The source a request sends as (``Healthway-Source-Id``/``Redox-Source-Id``, DESIGN §3).

    The header may be left out when the grant covers exactly one source; a legacy token ignores a header naming
    its own source. Missing where needed → 400; a source the key does not cover → 403.
    """
    requested = (requested or "").strip() or None
    db = _connection(reader)
    if requested is not None:
        if len(requested) > 64 or not grant.covers(requested):
            raise PermissionDenied("this token may not send as that source")
        source = _source(db, requested)
        if source is None or source.environment_id != grant.environment.id:
            raise PermissionDenied("this token may not send as that source")
        return source
    if grant.source_ids is not None:
        candidates = list(grant.source_ids)
    else:
        candidates = list(db.execute(_TWO_SOURCES, {"environment_id": grant.environment.id}).scalars())
    if len(candidates) != 1:
        raise InvalidRequest("name the source with the Healthway-Source-Id header: this token covers several")
    source = _source(db, candidates[0])
    assert source is not None
    return source


def _source(db: sa.Connection, source_id: str) -> SendingSource | None:
    """The source, read with one Core statement (hot path)."""
    row = db.execute(_SOURCE, {"source_id": source_id}).first()
    return SendingSource(id=row.id, name=row.name, environment_id=row.environment_id) if row else None
