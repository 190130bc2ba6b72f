"""Legacy API keys (deprecated): ``api_key`` + ``hwsk_`` secret → 24 h access token + rotating refresh token.

Kept so connected systems work while they migrate to OAuth keys. Secrets and tokens are stored as SHA-256
digests and compared in constant time. A refresh token is spent on use; presenting a spent one revokes its whole
family (the sign of a stolen token). Rotating the secret revokes every token issued under the old one.

Spending a refresh token is one conditional ``UPDATE ... WHERE spent_at IS NULL ... RETURNING``: of two
concurrent refreshes exactly one gets the row back (on PostgreSQL the second waits for the first's row lock and
then finds it spent); the other is treated as a reuse.

While the organization has ``allow_legacy_keys`` turned off, legacy keys do not authenticate at all (the
credentials are still checked first, so the answer reveals nothing to someone who does not hold them), and
the access tokens they issued are refused (``services.access_tokens``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor
from healthway.domain.audit import AuditAction
from healthway.domain.permissions import Permission
from healthway.domain.secrets import SecretKind, digest, has_kind, new_secret, same_digest
from healthway.errors import Conflict, LegacyKeysDisabled, PermissionDenied, Unauthenticated
from healthway.services import access_tokens, audit, authz, callers
from healthway.services.paging import EnvironmentScope, Page, View
from healthway.storage.db import Database
from healthway.storage.models import AccessToken, Environment, LegacyKey, Organization, RefreshToken, Source

ACCESS_TTL = timedelta(hours=24)
REFRESH_LIFETIME = timedelta(days=30)  # absolute, from the authentication that started the family
_DUMMY_DIGEST = digest("hwsk_" + "0" * 43)  # compared against for unknown keys, so both cases cost the same


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_at: datetime
    refresh_token: str


def create(session: Session, *, actor: Actor, source: Source, environment: Environment) -> tuple[LegacyKey, str]:
    """(key, secret in clear, shown once). At most one per source; only while the organization allows them."""
    authz.require_env(session, actor, Permission.KEYS_WRITE, environment)
    org = session.get(Organization, environment.organization_id)
    assert org is not None
    if not org.allow_legacy_keys:
        raise PermissionDenied("legacy API keys are turned off for this organization; create an OAuth key instead")
    if session.scalar(sa.select(LegacyKey).where(LegacyKey.source_id == source.id)) is not None:
        raise Conflict("this source already has a legacy key; rotate its secret instead")
    secret = new_secret(SecretKind.LEGACY_SECRET)
    key = LegacyKey(source_id=source.id, secret_digest=digest(secret))
    session.add(key)
    session.flush()
    _audit(session, actor, AuditAction.LEGACY_KEY_CREATE, key, environment, source)
    return key, secret


def rotate_secret(session: Session, *, actor: Actor, key: LegacyKey, now: datetime) -> str:
    """A new secret; the old one stops working at once and every token issued under it is revoked."""
    source, environment = _owner(session, key)
    authz.require_env(session, actor, Permission.KEYS_WRITE, environment)
    secret = new_secret(SecretKind.LEGACY_SECRET)
    key.secret_digest, key.secret_rotated_at = digest(secret), now
    _revoke_all(session, key.api_key, now)
    _audit(session, actor, AuditAction.LEGACY_KEY_ROTATE, key, environment, source)
    return secret


def find(session: Session, api_key: str) -> LegacyKey | None:
    if not isinstance(api_key, str) or len(api_key) > 64:
        return None
    return session.get(LegacyKey, api_key)


def authenticate(session: Session, *, api_key: str, secret: str, now: datetime) -> TokenPair:
    """Unknown key and wrong secret fail the same way, after the same work."""
    key = find(session, api_key)
    presented = digest(secret) if has_kind(secret, SecretKind.LEGACY_SECRET) else _DUMMY_DIGEST + "x"
    if not same_digest(presented, key.secret_digest if key else _DUMMY_DIGEST) or key is None:
        raise Unauthenticated("invalid apiKey or secret")
    _require_allowed(session, key.api_key)
    key.last_used_at = now
    return _issue(session, key, family_id=str(uuid.uuid4()), refresh_expires=now + REFRESH_LIFETIME, now=now)


def refresh(session: Session, *, api_key: str, refresh_token: str, now: datetime) -> TokenPair:
    """Spend ``refresh_token`` for a new pair, or raise Unauthenticated.

    Reuse of a spent token revokes its whole family and raises ``RefreshReuse``: the caller must still commit.
    """
    token_digest = digest(refresh_token) if _refresh_shaped(refresh_token) else None
    spent = _spend(session, token_digest, api_key, now) if token_digest else None
    if spent is None:
        _refuse_refresh(session, token_digest, api_key, now)
    family_id, refresh_expires = spent
    _require_allowed(session, api_key)
    key = session.get(LegacyKey, api_key)
    assert key is not None
    key.last_used_at = now
    return _issue(session, key, family_id=family_id, refresh_expires=refresh_expires, now=now)


def exchange_secret(db: Database, *, api_key: str, secret: str, now: datetime) -> TokenPair:
    """``authenticate`` in a unit of work of its own (``POST /auth/authenticate``)."""
    with db.session() as session:
        return authenticate(session, api_key=api_key, secret=secret, now=now)


def exchange_refresh_token(db: Database, *, api_key: str, refresh_token: str, now: datetime) -> TokenPair:
    """``refresh`` in a unit of work of its own (``POST /auth/refreshToken``). A reuse still commits: the
    revocation of the token's family must stand although the request fails (``RefreshReuse`` is raised after)."""
    reuse: RefreshReuse | None = None
    with db.session() as session:
        try:
            return refresh(session, api_key=api_key, refresh_token=refresh_token, now=now)
        except RefreshReuse as exc:
            reuse = exc
    raise reuse


def _refresh_shaped(token: str) -> bool:
    return has_kind(token, SecretKind.REFRESH_TOKEN) and len(token) < 200


def _spend(session: Session, token_digest: str, api_key: str, now: datetime) -> tuple[str, datetime] | None:
    """Mark the token spent if it is valid and unspent, in one conditional statement; (family, expiry) or None."""
    row = session.execute(
        sa.update(RefreshToken)
        .where(
            RefreshToken.token_digest == token_digest,
            RefreshToken.legacy_api_key == api_key,
            RefreshToken.spent_at.is_(None),
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > now,
        )
        .values(spent_at=now)
        .returning(RefreshToken.family_id, RefreshToken.expires_at),
        execution_options={"synchronize_session": False},
    ).first()
    return (row.family_id, row.expires_at) if row else None


def _refuse_refresh(session: Session, token_digest: str | None, api_key: str, now: datetime) -> NoReturn:
    """Why a refresh token could not be spent: unknown, not this key's, revoked or expired; or already spent
    (a reuse: the family is revoked)."""
    # FOR UPDATE: concurrent reuses of one token queue on its row before revoking the family, instead of
    # updating the family's rows in different orders and deadlocking (a 503) on PostgreSQL.
    row = (
        session.get(RefreshToken, token_digest, populate_existing=True, with_for_update=True) if token_digest else None
    )
    if row is None or row.legacy_api_key != api_key or row.revoked_at is not None or row.expires_at <= now:
        raise Unauthenticated("invalid refresh token")
    _revoke_family(session, row.family_id, now)
    raise RefreshReuse("this refresh token was already used; every token of its family is now revoked")


def _require_allowed(session: Session, api_key: str) -> None:
    """Legacy keys authenticate only while their organization allows them."""
    allowed = session.scalar(
        sa.select(Organization.allow_legacy_keys)
        .join(Environment, Environment.organization_id == Organization.id)
        .join(Source, Source.environment_id == Environment.id)
        .join(LegacyKey, LegacyKey.source_id == Source.id)
        .where(LegacyKey.api_key == api_key)
    )
    if not allowed:
        raise LegacyKeysDisabled()


class RefreshReuse(Unauthenticated):
    """Raised after revoking a family; the revocation must still be committed."""


def legacy_sources(session: Session, *, actor: Actor, environment: Environment) -> list[tuple[Source, LegacyKey]]:
    """Sources of ``environment`` that still hold a legacy key, for tracking a migration to OAuth keys."""
    authz.require_env(session, actor, Permission.KEYS_READ, environment)
    rows = session.execute(
        sa.select(Source, LegacyKey)
        .join(LegacyKey, LegacyKey.source_id == Source.id)
        .where(Source.environment_id == environment.id)
        .order_by(Source.created_at)
    )
    return [(source, key) for source, key in rows]


def list_page(session: Session, *, actor: Actor, scope: EnvironmentScope) -> Page[View]:
    """Sources of the scope's environments that the actor may read and that still hold a legacy key, with when
    each was last used (an empty list means migrated); one page: there are few."""
    envs = callers.readable_environments(session, actor, scope, Permission.KEYS_READ)
    rows = [row for env in envs for row in legacy_sources(session, actor=actor, environment=env)]
    return Page([view(key, source) for source, key in rows], None)


def view(key: LegacyKey, source: Source) -> dict[str, Any]:
    """The wire shape of a legacy key (never its secret): the CLI's ``--json`` and the Platform API."""
    return {
        "api_key": key.api_key,
        "source_id": source.id,
        "source_name": source.name,
        "created_at": key.created_at.isoformat(),
        "secret_rotated_at": key.secret_rotated_at.isoformat() if key.secret_rotated_at else None,
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
    }


def _issue(session: Session, key: LegacyKey, *, family_id: str, refresh_expires: datetime, now: datetime) -> TokenPair:
    source = session.get(Source, key.source_id)
    assert source is not None
    access, row = access_tokens.issue(
        session,
        environment_id=source.environment_id,
        legacy_api_key=key.api_key,
        family_id=family_id,
        now=now,
        ttl=ACCESS_TTL,
    )
    refresh_token = new_secret(SecretKind.REFRESH_TOKEN)
    session.add(
        RefreshToken(
            token_digest=digest(refresh_token),
            legacy_api_key=key.api_key,
            family_id=family_id,
            created_at=now,
            expires_at=refresh_expires,
        )
    )
    return TokenPair(access, row.expires_at, refresh_token)


def _revoke_family(session: Session, family_id: str, now: datetime) -> None:
    for model in (AccessToken, RefreshToken):
        session.execute(
            sa.update(model).where(model.family_id == family_id, model.revoked_at.is_(None)).values(revoked_at=now)
        )


def _revoke_all(session: Session, api_key: str, now: datetime) -> None:
    for model in (AccessToken, RefreshToken):
        session.execute(
            sa.update(model).where(model.legacy_api_key == api_key, model.revoked_at.is_(None)).values(revoked_at=now)
        )


def _owner(session: Session, key: LegacyKey) -> tuple[Source, Environment]:
    row = session.execute(sa.select(Source, Environment).join(Environment).where(Source.id == key.source_id)).one()
    return row[0], row[1]


def _audit(
    session: Session, actor: Actor, action: AuditAction, key: LegacyKey, environment: Environment, source: Source
) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        organization_id=environment.organization_id,
        subject_type="legacy_key",
        subject_id=key.api_key,
        summary={"source_id": source.id, "environment": environment.name},
    )
