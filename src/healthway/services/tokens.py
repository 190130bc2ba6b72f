"""Personal access tokens (``hwpat_``): how a person acts through the Platform API with their own roles."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor
from healthway.domain.audit import AuditAction
from healthway.domain.secrets import SecretKind, digest, has_kind, new_secret
from healthway.errors import InvalidRequest, NotFound, PermissionDenied
from healthway.services import users
from healthway.storage.models import PersonalAccessToken, User, utcnow


def create(session: Session, *, user: User, name: str) -> tuple[PersonalAccessToken, str]:
    """(row, the token in clear). The clear token is shown once and never stored."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("token name must be 1 to 200 characters")
    token = new_secret(SecretKind.PERSONAL_ACCESS_TOKEN)
    row = PersonalAccessToken(user_id=user.id, name=name, token_digest=digest(token))
    session.add(row)
    session.flush()
    return row, token


def authenticate(session: Session, token: str, *, now: datetime | None = None) -> User | None:
    """The token's user, or None when the token is unknown, revoked or expired."""
    if not has_kind(token, SecretKind.PERSONAL_ACCESS_TOKEN) or len(token) > 200:
        return None
    now = now or utcnow()
    row = session.scalar(sa.select(PersonalAccessToken).where(PersonalAccessToken.token_digest == digest(token)))
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    row.last_used_at = now
    return session.get(User, row.user_id)


# -- lifecycle on behalf of an actor (audited) --------------------------------------------------------------


def issue(session: Session, *, actor: Actor, user: User, name: str) -> tuple[PersonalAccessToken, str]:
    """A new token for ``user``, audited. People create tokens only for themselves; the operator for anyone."""
    if not actor.is_operator and actor.id != user.id:
        raise PermissionDenied("personal access tokens are created only by their owner")
    row, token = create(session, user=user, name=name)
    users.record_about(
        session,
        actor=actor,
        action=AuditAction.TOKEN_CREATE,
        user=user,
        subject_type="personal_access_token",
        subject_id=row.id,
        summary={"name": row.name, "user": user.email},
    )
    return row, token


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
    users.record_about(
        session,
        actor=actor,
        action=AuditAction.TOKEN_REVOKE,
        user=user,
        subject_type="personal_access_token",
        subject_id=token.id,
        summary={"name": token.name, "user": user.email},
    )
