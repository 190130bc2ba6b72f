"""Users: accounts, organization membership and environment roles. Every function that acts for someone
checks that actor's permission itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain import passwords
from healthway.domain.actors import CLI, Actor
from healthway.domain.audit import AuditAction
from healthway.domain.environments import EnvironmentName
from healthway.domain.permissions import EnvRole, OrgRole, Permission, permission_change
from healthway.domain.secrets import generate_password
from healthway.errors import Conflict, InvalidRequest, NotFound
from healthway.services import audit, authz
from healthway.storage.models import Environment, EnvironmentRole, Membership, Organization, User


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


# -- organization members (Platform API and CLI) ------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A user as one organization sees them: their org role and their role in each of its environments."""

    user: User
    org_role: OrgRole
    roles: dict[str, EnvRole | None]  # environment name → role (None: no access)


@dataclass(frozen=True)
class RoleChange:
    user: User
    environment: Environment
    previous: EnvRole | None
    role: EnvRole | None
    gained: list[str]
    lost: list[str]


def organization_ids(session: Session, user: User) -> list[str]:
    return list(session.scalars(sa.select(Membership.organization_id).where(Membership.user_id == user.id)))


def record_about(
    session: Session,
    *,
    actor: Actor,
    action: AuditAction,
    user: User,
    subject_type: str,
    subject_id: str,
    summary: dict[str, Any],
) -> None:
    """Audit something that belongs to a person rather than to one organization (logins, personal tokens).

    The event is written once into each organization the user belongs to, so each one's owners see the
    whole story of their people; a user of one organization (the usual case) gets exactly one event.
    """
    targets: list[str | None] = [*organization_ids(session, user)] or [None]
    for organization_id in targets:
        audit.record(
            session,
            actor=actor,
            action=action,
            organization_id=organization_id,
            subject_type=subject_type,
            subject_id=subject_id,
            summary=summary,
        )


def invite(
    session: Session,
    *,
    actor: Actor,
    organization: Organization,
    email: str,
    org_role: OrgRole = OrgRole.MEMBER,
) -> tuple[User, str | None]:
    """Add a person to ``organization``: (user, generated password shown once; None when they already had an
    account in another organization). Org admins invite members; only owners grant ``admin`` or ``owner``."""
    authz.require_org(session, actor, Permission.USERS_INVITE, organization.id)
    if org_role is not OrgRole.MEMBER:
        authz.require_org(session, actor, Permission.ORG_ROLES_ASSIGN, organization.id)
    user, password = find_or_create(session, email=email, password=None)
    if session.get(Membership, (user.id, organization.id)) is not None:
        raise Conflict(f"{user.email} is already a member of this organization")
    session.add(Membership(user_id=user.id, organization_id=organization.id, role=org_role.value))
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.USER_CREATE,
        organization_id=organization.id,
        subject_type="user",
        subject_id=user.email,
        summary={"email": user.email, "org_role": org_role.value, "new_account": password is not None},
    )
    return user, password


def get_member(session: Session, *, actor: Actor, organization: Organization, email: str) -> Member:
    """A member of ``organization``; NotFound for anyone else (never reveals accounts of other organizations)."""
    authz.require_org(session, actor, Permission.USERS_READ, organization.id)
    return _member(session, organization, email)


def members_query(organization: Organization) -> sa.Select[User]:
    return sa.select(User).join(Membership).where(Membership.organization_id == organization.id)


def list_members(
    session: Session, *, actor: Actor, organization: Organization, users: Sequence[User] | None = None
) -> list[Member]:
    """``users`` (one page, all members of the organization when None) with their roles."""
    authz.require_org(session, actor, Permission.USERS_READ, organization.id)
    if users is None:
        users = session.scalars(members_query(organization).order_by(User.created_at, User.id)).all()
    ids = [u.id for u in users]
    memberships = session.execute(
        sa.select(Membership.user_id, Membership.role).where(
            Membership.organization_id == organization.id, Membership.user_id.in_(ids)
        )
    )
    org_roles = dict(memberships.all())
    env_roles = session.execute(
        sa.select(EnvironmentRole.user_id, Environment.name, EnvironmentRole.role)
        .join(Environment)
        .where(Environment.organization_id == organization.id, EnvironmentRole.user_id.in_(ids))
    )
    roles: dict[str, dict[str, EnvRole | None]] = {i: dict.fromkeys(e.value for e in EnvironmentName) for i in ids}
    for user_id, env_name, role in env_roles:
        roles[user_id][env_name] = EnvRole(role)
    return [Member(u, OrgRole(org_roles[u.id]), roles[u.id]) for u in users]


def set_env_role(
    session: Session, *, actor: Actor, environment: Environment, email: str, role: EnvRole | None
) -> RoleChange:
    """Give a member ``role`` in ``environment`` (None removes access) and say what they gain and lose.

    Org owners and admins assign environment roles. An unchanged role writes no audit event.
    """
    authz.require_org(session, actor, Permission.ENV_ROLES_ASSIGN, environment.organization_id)
    organization = session.get(Organization, environment.organization_id)
    assert organization is not None
    user = _member(session, organization, email).user
    previous = assign_env_role(session, user=user, environment=environment, role=role)
    diff = permission_change(previous, role, EnvironmentName(environment.name))
    if previous != role:
        audit.record(
            session,
            actor=actor,
            action=AuditAction.ROLE_REMOVE if role is None else AuditAction.ROLE_ASSIGN,
            organization_id=environment.organization_id,
            subject_type="user",
            subject_id=user.email,
            summary={"environment": environment.name, "role": [_value(previous), _value(role)], **diff},
        )
    return RoleChange(user, environment, previous, role, diff["gained"], diff["lost"])


def _member(session: Session, organization: Organization, email: str) -> Member:
    user = find_by_email(session, email)
    if user is None or session.get(Membership, (user.id, organization.id)) is None:
        raise NotFound("user not found")
    return list_members(session, actor=CLI, organization=organization, users=[user])[0]


def _value(role: EnvRole | None) -> str | None:
    return role.value if role else None
