"""Organizations, their environments, and first-run initialization."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor
from healthway.domain.audit import AuditAction
from healthway.domain.environments import EnvironmentName, parse_environment
from healthway.domain.passwords import Passwords
from healthway.domain.permissions import EnvRole, OrgRole, Permission
from healthway.errors import AlreadyInitialized, InvalidRequest, NotFound, PermissionDenied
from healthway.services import audit, authz, callers, users
from healthway.services.paging import Page, View
from healthway.storage.models import Environment, Membership, Organization


@dataclass(frozen=True)
class NewOrganization:
    organization: Organization
    owner_email: str
    owner_password: str | None  # only when the owner is a new user with a generated password


def view(org: Organization, role: OrgRole | None) -> View:
    return {
        "id": org.id,
        "name": org.name,
        "allow_legacy_keys": org.allow_legacy_keys,
        "created_at": org.created_at.isoformat(),
        "role": users.role_value(role),  # the caller's org role
    }


def environment_view(env: Environment, role: EnvRole | None) -> View:
    return {"id": env.id, "name": env.name, "organization_id": env.organization_id, "role": users.role_value(role)}


def list_page(session: Session, *, actor: Actor) -> Page[View]:
    """The organizations the caller belongs to (oldest first), with the caller's org role in each; one page."""
    orgs = sorted(memberships_of(session, actor).values(), key=lambda o: (o.created_at, o.id))
    return Page([view(org, authz.org_role(session, actor, org.id)) for org in orgs], None)


def visible(session: Session, *, actor: Actor, organization_id: str) -> Organization:
    """The organization, if the actor may read it; NotFound for non-members (other organizations stay invisible)."""
    authz.require_org(session, actor, Permission.ORG_READ, organization_id)
    org = get(session, organization_id)
    if org is None:
        raise NotFound("organization not found")
    return org


def caller_view(session: Session, *, actor: Actor, organization: Organization) -> View:
    """The organization with the caller's org role in it."""
    return view(organization, authz.org_role(session, actor, organization.id))


def environments_page(session: Session, *, actor: Actor, organization_id: str | None) -> Page[View]:
    """The caller's organization's three environments in their fixed order, with the caller's role in each
    (None: no access); one page."""
    org = callers.organization(session, actor, organization_id)
    authz.require_org(session, actor, Permission.ORG_READ, org.id)
    order = list(EnvironmentName)
    envs = sorted(environments(session, org.id), key=lambda e: order.index(EnvironmentName(e.name)))
    return Page([environment_view(env, authz.env_role(session, actor, env.id)) for env in envs], None)


def get(session: Session, organization_id: str) -> Organization | None:
    return session.get(Organization, organization_id)


def all_organizations(session: Session) -> list[Organization]:
    """Every organization, oldest first: the operator's view (the CLI acts for the installation)."""
    return list(session.scalars(sa.select(Organization).order_by(Organization.created_at)))


def resolve(session: Session, organization_id: str | None) -> Organization:
    """The given organization, or the only one when none is given (the common single-tenant case)."""
    if organization_id:
        org = get(session, organization_id)
        if org is None:
            raise NotFound(f"organization {organization_id[:40]!r} not found")
        return org
    orgs = list(session.scalars(sa.select(Organization).limit(2)))
    if not orgs:
        raise NotFound("no organization yet; run `healthway init` first")
    if len(orgs) > 1:
        raise InvalidRequest("several organizations exist; name one with --org")
    return orgs[0]


def environment(session: Session, organization_id: str, name: str) -> Environment:
    env_name = parse_environment(name)
    env = session.scalar(
        sa.select(Environment).where(Environment.organization_id == organization_id, Environment.name == env_name.value)
    )
    assert env is not None, "every organization has its three environments"
    return env


def environments(session: Session, organization_id: str) -> list[Environment]:
    return list(session.scalars(sa.select(Environment).where(Environment.organization_id == organization_id)))


def is_initialized(session: Session) -> bool:
    return session.scalar(sa.select(sa.func.count()).select_from(Organization)) != 0


def create(
    session: Session,
    *,
    actor: Actor,
    name: str,
    owner_email: str,
    passwords: Passwords,
    owner_password: str | None = None,
    must_change: bool = True,
) -> NewOrganization:
    """An organization with its three environments; the owner gets org role ``owner`` and ``admin`` everywhere.

    Only the installation's operator creates organizations. A new owner's generated password must be changed at
    first use unless ``must_change`` is False.
    """
    if not actor.is_operator:
        raise PermissionDenied("only the installation's operator creates organizations")
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("organization name must be 1 to 200 characters")
    org = Organization(name=name)
    session.add(org)
    session.flush()
    envs = [Environment(organization_id=org.id, name=e.value) for e in EnvironmentName]
    session.add_all(envs)
    owner, password = users.find_or_create(
        session, email=owner_email, password=owner_password, passwords=passwords, must_change=must_change
    )
    session.add(Membership(user_id=owner.id, organization_id=org.id, role=OrgRole.OWNER.value))
    session.flush()
    for env in envs:
        users.assign_env_role(session, user=owner, environment=env, role=EnvRole.ADMIN)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.ORG_CREATE,
        organization_id=org.id,
        subject_type="organization",
        subject_id=org.id,
        summary={"name": name, "owner": owner.email},
    )
    return NewOrganization(org, owner.email, password)


def initialize(
    session: Session, *, actor: Actor, name: str, admin_email: str, admin_password: str | None, passwords: Passwords
) -> NewOrganization:
    """First run only: refuses when any organization exists."""
    if is_initialized(session):
        raise AlreadyInitialized("already initialized: an organization exists (use `healthway org create` for more)")
    # The operator running init is the first admin: the password printed to them is theirs to keep.
    return create(
        session,
        actor=actor,
        name=name,
        owner_email=admin_email,
        owner_password=admin_password,
        passwords=passwords,
        must_change=False,
    )


def set_allow_legacy_keys(session: Session, *, actor: Actor, organization: Organization, allow: bool) -> None:
    authz.require_org(session, actor, Permission.ORG_UPDATE, organization.id)
    if organization.allow_legacy_keys == allow:
        return
    organization.allow_legacy_keys = allow
    audit.record(
        session,
        actor=actor,
        action=AuditAction.ORG_UPDATE,
        organization_id=organization.id,
        subject_type="organization",
        subject_id=organization.id,
        summary={"allow_legacy_keys": allow},
    )


def memberships_of(session: Session, actor: Actor) -> dict[str, Organization]:
    """The organizations a user belongs to, by ID (only the bound one for an organization-bound token)."""
    query = (
        sa.select(Organization)
        .join(Membership, Membership.organization_id == Organization.id)
        .where(Membership.user_id == actor.id)
    )
    if actor.organization_id is not None:
        query = query.where(Organization.id == actor.organization_id)
    rows = session.scalars(query)
    return {org.id: org for org in rows}
