"""Personal access tokens (``hwpat_``): how a person acts through the Platform API with their own roles."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.secrets import SecretKind, digest, has_kind, new_secret
from healthway.errors import InvalidRequest
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
