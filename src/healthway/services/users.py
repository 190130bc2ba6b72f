"""Users, their environment roles and their personal access tokens."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain import passwords
from healthway.domain.permissions import EnvRole
from healthway.domain.secrets import generate_password
from healthway.errors import InvalidRequest
from healthway.storage.models import Environment, EnvironmentRole, User


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not (local and at and "." in domain) or len(email) > 320 or any(c.isspace() for c in email):
        raise InvalidRequest("not a valid e-mail address")
    return email


def find_by_email(session: Session, email: str) -> User | None:
    return session.scalar(sa.select(User).where(User.email == email.strip().lower()))


def find_or_create(session: Session, *, email: str, password: str | None) -> tuple[User, str | None]:
    """(user, generated password). An existing user keeps their password; a new one gets ``password`` or a
    generated one, which is returned so it can be shown once."""
    email = normalize_email(email)
    existing = find_by_email(session, email)
    if existing is not None:
        return existing, None
    generated = None
    if password is None:
        password = generated = generate_password()
    passwords.check_policy(password)
    user = User(email=email, password_hash=passwords.hash_password(password))
    session.add(user)
    session.flush()
    return user, generated


def assign_env_role(session: Session, *, user: User, environment: Environment, role: EnvRole | None) -> EnvRole | None:
    """Set (or with None remove) the user's role in one environment; returns the previous role."""
    current = session.get(EnvironmentRole, (user.id, environment.id))
    previous = EnvRole(current.role) if current else None
    if role is None:
        if current is not None:
            session.delete(current)
    elif current is None:
        session.add(EnvironmentRole(user_id=user.id, environment_id=environment.id, role=role.value))
    else:
        current.role = role.value
    session.flush()
    return previous
