"""Users: accounts, organization membership and environment roles. Every function that acts for someone
checks that actor's permission itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import CLI, Actor
from healthway.domain.audit import AuditAction
from healthway.domain.environments import EnvironmentName
from healthway.domain.passwords import Passwords, check_policy
from healthway.domain.permissions import EnvRole, OrgRole, Permission, grants_phi, permission_change
from healthway.domain.secrets import generate_password
from healthway.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from healthway.services import audit, authz, callers, personal_tokens
from healthway.services.paging import Page, View
from healthway.storage.models import (
    Environment,
    EnvironmentRole,
    LoginFailure,
    Membership,
    Organization,
    User,
)
from healthway.storage.pagination import page


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not (local and at and "." in domain) or len(email) > 320 or any(c.isspace() for c in email):
        raise InvalidRequest("not a valid e-mail address")
    return email


def find_by_email(session: Session, email: str) -> User | None:
    return session.scalar(sa.select(User).where(User.email == email.strip().lower()))


def find_or_create(
    session: Session, *, email: str, password: str | None, passwords: Passwords, must_change: bool = True
) -> tuple[User, str | None]:
    """(user, generated password). An existing user keeps their password; a new one gets ``password`` or a
    generated one, which is returned so it can be shown once. Someone other than the user sees a generated
    password, so it must be changed at first use unless ``must_change`` is False (``healthway init``: the operator
    who reads it IS that user)."""
    email = normalize_email(email)
    existing = find_by_email(session, email)
    if existing is not None:
        return existing, None
    generated = None
    if password is None:
        password = generated = generate_password()
    check_policy(password)
    user = User(
        email=email,
        password_hash=passwords.hash(password),
        password_must_change=generated is not None and must_change,
    )
    session.add(user)
    session.flush()
    return user, generated


def set_password(
    session: Session, *, actor: Actor, user: User, password: str | None, passwords: Passwords
) -> str | None:
    """Give ``user`` a new password: the given one, or a generated one (returned to be shown once) that must be
    changed at first use. The user themself, or the operator. Clears the account's failed logins; audited."""
    if not actor.is_operator and actor.id != user.id:
        raise PermissionDenied("a password is changed only by its owner or the operator")
    generated = None
    if password is None:
        password = generated = generate_password()
    check_policy(password)
    user.password_hash = passwords.hash(password)
    user.password_must_change = generated is not None
    session.execute(sa.delete(LoginFailure).where(LoginFailure.email == user.email))
    targets: list[str | None] = [*organization_ids(session, user)] or [None]
    for organization_id in targets:
        audit.record(
            session,
            actor=actor,
            action=AuditAction.USER_PASSWORD_CHANGE,
            organization_id=organization_id,
            subject_type="user",
            subject_id=user.email,
            summary={"generated": generated is not None},
        )
    return generated


def set_own_password(session: Session, *, actor: Actor, password: str, passwords: Passwords) -> None:
    """The caller's own new password (the caller proved the current one: the transport's login)."""
    user = session.get(User, actor.id)
    assert user is not None
    set_password(session, actor=actor, user=user, password=password, passwords=passwords)


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


def add_member(
    session: Session,
    *,
    actor: Actor,
    organization: Organization,
    email: str,
    passwords: Passwords,
    org_role: OrgRole = OrgRole.MEMBER,
) -> tuple[User, str | None]:
    """The operator adds a person to ``organization`` at once: (user, generated password shown once, which must be
    changed at first use; None when they already had an account). People invite instead (services/invitations)."""
    if not actor.is_operator:
        raise PermissionDenied("only the installation's operator adds members directly; invite them instead")
    user, password = find_or_create(session, email=email, password=None, passwords=passwords)
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


def remove_member(session: Session, *, actor: Actor, organization: Organization, email: str, now: datetime) -> User:
    """End a membership: its environment roles go, and the tokens bound to the organization are revoked.

    Org owners and admins remove members; only owners remove an admin or an owner; the last owner stays.
    """
    authz.require_org(session, actor, Permission.USERS_REMOVE, organization.id)
    member = _member(session, organization, email)
    if member.org_role is not OrgRole.MEMBER:
        authz.require_org(session, actor, Permission.ORG_ROLES_ASSIGN, organization.id)
    if member.org_role is OrgRole.OWNER and _owner_count(session, organization) == 1:
        raise Conflict("the last owner of an organization cannot be removed")
    user = member.user
    env_ids = sa.select(Environment.id).where(Environment.organization_id == organization.id)
    session.execute(
        sa.delete(EnvironmentRole).where(
            EnvironmentRole.user_id == user.id, EnvironmentRole.environment_id.in_(env_ids)
        )
    )
    session.execute(
        sa.delete(Membership).where(Membership.user_id == user.id, Membership.organization_id == organization.id)
    )
    revoked = personal_tokens.revoke_bound(session, user=user, organization_id=organization.id, now=now)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.USER_REMOVE,
        organization_id=organization.id,
        subject_type="user",
        subject_id=user.email,
        summary={
            "org_role": member.org_role.value,
            "roles": {k: role_value(v) for k, v in member.roles.items()},
            "tokens_revoked": revoked,
        },
    )
    return user


def _owner_count(session: Session, organization: Organization) -> int:
    return int(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(Membership)
            .where(Membership.organization_id == organization.id, Membership.role == OrgRole.OWNER.value)
        )
        or 0
    )


def get_member(session: Session, *, actor: Actor, organization: Organization, email: str) -> Member:
    """A member of ``organization``; NotFound for anyone else (never reveals accounts of other organizations)."""
    authz.require_org(session, actor, Permission.USERS_READ, organization.id)
    return _member(session, organization, email)


def list_page(
    session: Session, *, actor: Actor, organization_id: str | None, cursor: str | None = None, limit: int = 100
) -> Page[View]:
    """The members of the caller's organization with their roles, oldest account first."""
    organization = callers.organization(session, actor, organization_id)
    authz.require_org(session, actor, Permission.USERS_READ, organization.id)
    rows, next_cursor = page(
        session, members_query(organization), created_at=User.created_at, row_id=User.id, cursor=cursor, limit=limit
    )
    members = list_members(session, actor=actor, organization=organization, users=rows)
    return Page([view(m) for m in members], next_cursor)


def view(member: Member) -> View:
    last_login = member.user.last_login_at
    return {
        "id": member.user.id,
        "email": member.user.email,
        "org_role": member.org_role.value,
        "roles": {env: role_value(role) for env, role in member.roles.items()},
        "totp": member.user.totp_secret is not None,
        "created_at": member.user.created_at.isoformat(),
        "last_login_at": last_login.isoformat() if last_login else None,
    }


def role_change_view(change: RoleChange) -> View:
    return {
        "email": change.user.email,
        "environment": change.environment.name,
        "role": role_value(change.role),
        "previous_role": role_value(change.previous),
        "gained": change.gained,
        "lost": change.lost,
    }


def members_query(organization: Organization) -> sa.Select[User]:
    return sa.select(User).join(Membership).where(Membership.organization_id == organization.id)


def list_members(session: Session, *, actor: Actor, organization: Organization, users: Sequence[User]) -> list[Member]:
    """``users`` (members of ``organization``: one page) with their roles."""
    authz.require_org(session, actor, Permission.USERS_READ, organization.id)
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

    Org owners and admins assign environment roles; only owners grant a role that reads PHI (production admin
    or analyst) or change an owner's roles, so an admin cannot raise themselves to PHI or demote an owner.
    An unchanged role writes no audit event.
    """
    authz.require_org(session, actor, Permission.ENV_ROLES_ASSIGN, environment.organization_id)
    organization = session.get(Organization, environment.organization_id)
    assert organization is not None
    member = _member(session, organization, email)
    if member.org_role is OrgRole.OWNER or grants_phi(role, EnvironmentName(environment.name)):
        authz.require_org(session, actor, Permission.PHI_ROLES_ASSIGN, environment.organization_id)
    user = member.user
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
            summary={"environment": environment.name, "role": [role_value(previous), role_value(role)], **diff},
        )
    return RoleChange(user, environment, previous, role, diff["gained"], diff["lost"])


def _member(session: Session, organization: Organization, email: str) -> Member:
    user = find_by_email(session, email)
    if user is None or session.get(Membership, (user.id, organization.id)) is None:
        raise NotFound("user not found")
    return list_members(session, actor=CLI, organization=organization, users=[user])[0]


def role_value(role: OrgRole | EnvRole | None) -> str | None:
    """A role as the wire and the audit trail spell it (None: no role)."""
    return role.value if role else None
