"""Personal access tokens (``hwpat_``): how a person acts through the Platform API with their own roles.

A token is bound to the organization it was made in: a person who belongs to several organizations acts in
the one each token names, and that organization's audit trail is the one that records the token's story.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor
from healthway.domain.audit import AuditAction
from healthway.domain.secrets import SecretKind, digest, has_kind, new_secret
from healthway.errors import InvalidRequest, NotFound, PermissionDenied
from healthway.services import audit
from healthway.storage.models import PersonalAccessToken, User, utcnow


def create(
    session: Session, *, user: User, name: str, organization_id: str | None = None
) -> tuple[PersonalAccessToken, str]:
    """(row, the token in clear), bound to ``organization_id``. The clear token is shown once, never stored."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("token name must be 1 to 200 characters")
    token = new_secret(SecretKind.PERSONAL_ACCESS_TOKEN)
    row = PersonalAccessToken(user_id=user.id, name=name, token_digest=digest(token), organization_id=organization_id)
    session.add(row)
    session.flush()
    return row, token


def authenticate(session: Session, token: str, *, now: datetime | None = None) -> PersonalAccessToken | None:
    """The token, or None when it is unknown, revoked or expired."""
    if not has_kind(token, SecretKind.PERSONAL_ACCESS_TOKEN) or len(token) > 200:
        return None
    now = now or utcnow()
    row = session.scalar(sa.select(PersonalAccessToken).where(PersonalAccessToken.token_digest == digest(token)))
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    row.last_used_at = now
    return row


# -- lifecycle on behalf of an actor (audited) --------------------------------------------------------------


def issue(
    session: Session, *, actor: Actor, user: User, name: str, organization_id: str | None
) -> tuple[PersonalAccessToken, str]:
    """A new token for ``user`` bound to ``organization_id`` (one of theirs), audited there. People create tokens
    only for themselves; the operator for anyone."""
    if not actor.is_operator and actor.id != user.id:
        raise PermissionDenied("personal access tokens are created only by their owner")
    row, token = create(session, user=user, name=name, organization_id=organization_id)
    _audit(session, actor, AuditAction.TOKEN_CREATE, row, user)
    return row, token


def _audit(session: Session, actor: Actor, action: AuditAction, row: PersonalAccessToken, user: User) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        organization_id=row.organization_id,
        subject_type="personal_access_token",
        subject_id=row.id,
        summary={"name": row.name, "user": user.email},
    )


def active_of(user: User) -> sa.Select[PersonalAccessToken]:
    """The user's tokens that still work (revoked ones are gone for good)."""
    return sa.select(PersonalAccessToken).where(
        PersonalAccessToken.user_id == user.id, PersonalAccessToken.revoked_at.is_(None)
    )


def find_for(
    session: Session, *, actor: Actor, token_id: str | None = None, token: str | None = None
) -> PersonalAccessToken:
    """An active token by ID or by its clear value. Someone else's token is NotFound unless the actor is the
    operator: a person never learns that another person's token exists."""
    if token is not None:
        row = session.scalar(sa.select(PersonalAccessToken).where(PersonalAccessToken.token_digest == digest(token)))
    else:
        row = session.get(PersonalAccessToken, token_id) if token_id else None
    if row is None or row.revoked_at is not None or not (actor.is_operator or row.user_id == actor.id):
        raise NotFound("token not found")
    return row


def revoke(session: Session, *, actor: Actor, token: PersonalAccessToken, now: datetime) -> None:
    """Revoke at once: the next request with it is 401."""
    token.revoked_at = now
    user = session.get(User, token.user_id)
    assert user is not None
    _audit(session, actor, AuditAction.TOKEN_REVOKE, token, user)


def revoke_bound(session: Session, *, user: User, organization_id: str, now: datetime) -> int:
    """Revoke the user's tokens bound to an organization they leave; returns how many."""
    result = session.execute(
        sa.update(PersonalAccessToken)
        .where(
            PersonalAccessToken.user_id == user.id,
            PersonalAccessToken.organization_id == organization_id,
            PersonalAccessToken.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
