"""Invitations: an organization offers membership; the person joins only when they accept (their consent).

What the inviter learns is the same whether or not the address already has an account: no password, no TOTP
state, no "new account" flag. A new address gets an account with no usable password: the operator gives its
first one (``healthway user set-password``, generated and to be changed at first use). The invitee sees their
pending invitations once logged in and accepts or declines each.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor
from healthway.domain.audit import AuditAction
from healthway.domain.passwords import Passwords
from healthway.domain.permissions import OrgRole, Permission
from healthway.domain.secrets import generate_password
from healthway.errors import Conflict, NotFound
from healthway.services import audit, authz, users
from healthway.services.paging import Page, View
from healthway.storage.models import Invitation, Membership, Organization, User


@dataclass(frozen=True)
class Pending:
    invitation: Invitation
    organization: Organization
    email: str


def view(pending: Pending) -> View:
    """The same fields whoever is invited: nothing says whether the address already had an account."""
    return {
        "id": pending.invitation.id,
        "email": pending.email,
        "organization_id": pending.organization.id,
        "organization_name": pending.organization.name,
        "org_role": pending.invitation.org_role,
        "status": "invited",
        "created_at": pending.invitation.created_at.isoformat(),
    }


def list_page(session: Session, *, actor: Actor) -> Page[View]:
    """Invitations made to the caller and not yet answered; one page."""
    return Page([view(p) for p in pending_for(session, actor=actor)], None)


def invite(
    session: Session,
    *,
    actor: Actor,
    organization: Organization,
    email: str,
    passwords: Passwords,
    org_role: OrgRole = OrgRole.MEMBER,
) -> Pending:
    """A pending invitation of ``email`` to ``organization`` (the existing one when asked twice).

    Org admins invite members; only owners invite admins or owners. A current member → Conflict.
    """
    authz.require_org(session, actor, Permission.USERS_INVITE, organization.id)
    if org_role is not OrgRole.MEMBER:
        authz.require_org(session, actor, Permission.ORG_ROLES_ASSIGN, organization.id)
    user = users.find_by_email(session, users.normalize_email(email)) or _placeholder(session, email, passwords)
    if session.get(Membership, (user.id, organization.id)) is not None:
        raise Conflict(f"{user.email} is already a member of this organization")
    invitation = session.scalar(
        sa.select(Invitation).where(Invitation.organization_id == organization.id, Invitation.user_id == user.id)
    )
    if invitation is None:
        invitation = Invitation(
            organization_id=organization.id, user_id=user.id, org_role=org_role.value, invited_by=actor.label
        )
        session.add(invitation)
    invitation.org_role = org_role.value
    session.flush()
    _audit(session, actor, AuditAction.INVITATION_CREATE, invitation, user.email)
    return Pending(invitation, organization, user.email)


def _placeholder(session: Session, email: str, passwords: Passwords) -> User:
    """An account for a new address, with a random password nobody knows (the operator sets the first one)."""
    user = User(
        email=users.normalize_email(email),
        password_hash=passwords.hash(generate_password()),
        password_must_change=True,
    )
    session.add(user)
    session.flush()
    return user


def pending_for(session: Session, *, actor: Actor) -> list[Pending]:
    """The caller's own pending invitations, oldest first."""
    rows = session.execute(
        sa.select(Invitation, Organization)
        .join(Organization, Organization.id == Invitation.organization_id)
        .where(Invitation.user_id == actor.id)
        .order_by(Invitation.created_at, Invitation.id)
    )
    return [Pending(invitation, org, actor.label or "") for invitation, org in rows]


def _own(session: Session, actor: Actor, invitation_id: str) -> Invitation:
    """Someone else's invitation is NotFound: nobody learns of invitations made to others."""
    invitation = session.get(Invitation, invitation_id)
    if invitation is None or invitation.user_id != actor.id:
        raise NotFound("invitation not found")
    return invitation


def accept(session: Session, *, actor: Actor, invitation_id: str) -> Membership:
    """Join the organization with the invited org role; audited in that organization."""
    invitation = _own(session, actor, invitation_id)
    membership = Membership(
        user_id=invitation.user_id, organization_id=invitation.organization_id, role=invitation.org_role
    )
    session.add(membership)
    session.delete(invitation)
    session.flush()
    _audit(session, actor, AuditAction.INVITATION_ACCEPT, invitation, actor.label or "")
    return membership


def decline(session: Session, *, actor: Actor, invitation_id: str) -> None:
    invitation = _own(session, actor, invitation_id)
    session.delete(invitation)
    session.flush()
    _audit(session, actor, AuditAction.INVITATION_DECLINE, invitation, actor.label or "")


def withdraw(session: Session, *, actor: Actor, organization: Organization, email: str) -> bool:
    """Withdraw a pending invitation of ``email`` (False when there is none); audited as ``user:remove``."""
    authz.require_org(session, actor, Permission.USERS_REMOVE, organization.id)
    user = users.find_by_email(session, email)
    invitation = (
        session.scalar(
            sa.select(Invitation).where(Invitation.organization_id == organization.id, Invitation.user_id == user.id)
        )
        if user
        else None
    )
    if invitation is None or user is None:
        return False
    if invitation.org_role != OrgRole.MEMBER.value:
        authz.require_org(session, actor, Permission.ORG_ROLES_ASSIGN, organization.id)
    session.delete(invitation)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.USER_REMOVE,
        organization_id=organization.id,
        subject_type="user",
        subject_id=user.email,
        summary={"invitation": invitation.id, "org_role": invitation.org_role},
    )
    return True


def _audit(session: Session, actor: Actor, action: AuditAction, invitation: Invitation, email: str) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        organization_id=invitation.organization_id,
        subject_type="invitation",
        subject_id=invitation.id,
        summary={"email": email, "org_role": invitation.org_role},
    )
