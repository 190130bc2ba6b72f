"""Personal access tokens (``hwpat_``): how a person acts through the Platform API with their own roles.

A token is bound to the organization it was made in: a person who belongs to several organizations acts in
the one each token names, and that organization's audit trail is the one that records the token's story.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor, ActorType
from healthway.domain.audit import AuditAction
from healthway.domain.secrets import SecretKind, digest, has_kind, new_secret
from healthway.errors import InvalidRequest, NotFound, PermissionDenied
from healthway.services import audit, callers, organizations
from healthway.services.paging import Page, View
from healthway.storage.models import PersonalAccessToken, User, utcnow
from healthway.storage.pagination import page


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


def actor_for(session: Session, token: str, *, now: datetime, address: str | None) -> Actor | None:
    """The user behind a personal access token, acting in the token's organization; None when the token is
    unknown, revoked or expired (or its user is gone)."""
    row = authenticate(session, token, now=now)
    user = session.get(User, row.user_id) if row else None
    if row is None or user is None:
        return None
    return Actor(ActorType.USER, id=user.id, label=user.email, address=address, organization_id=row.organization_id)


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


def issue_own(session: Session, *, actor: Actor, name: str, organization_id: str | None) -> View:
    """A new token for the caller, bound to one of their organizations (``issue_organization``); the answer holds
    the token in clear, this once."""
    user = session.get(User, actor.id)
    assert user is not None
    row, token = issue(
        session, actor=actor, user=user, name=name, organization_id=issue_organization(session, actor, organization_id)
    )
    return {"token": token, "name": row.name, "id": row.id, "organization_id": row.organization_id}


def issue_organization(session: Session, actor: Actor, requested: str | None) -> str | None:
    """A token made with a bound token stays in its organization; else the one named, or the user's only one."""
    if actor.organization_id is not None or requested:
        return callers.organization(session, actor, requested).id
    memberships = organizations.memberships_of(session, actor)
    if len(memberships) > 1:
        raise InvalidRequest('you belong to several organizations; name one with "organization"')
    return next(iter(memberships), None)


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


def list_page(session: Session, *, actor: Actor, cursor: str | None = None, limit: int = 100) -> Page[View]:
    """The caller's own active tokens, oldest first; never their values."""
    user = session.get(User, actor.id)
    assert user is not None
    rows, next_cursor = page(
        session,
        active_of(user),
        created_at=PersonalAccessToken.created_at,
        row_id=PersonalAccessToken.id,
        cursor=cursor,
        limit=limit,
    )
    return Page([view(t) for t in rows], next_cursor)


def view(token: PersonalAccessToken) -> View:
    return {
        "id": token.id,
        "name": token.name,
        "created_at": token.created_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
    }


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
