"""How accounts look on the wire (CLI ``--json`` and Platform API alike): organizations, environments, users,
role changes, personal access tokens and audit events. Never a secret or a hash."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from healthway.domain.permissions import EnvRole, OrgRole
from healthway.services.invitations import Pending
from healthway.services.users import Member, RoleChange
from healthway.storage.models import AuditEvent, Environment, Organization, PersonalAccessToken


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _role(role: OrgRole | EnvRole | None) -> str | None:
    return role.value if role else None


def organization_view(org: Organization, role: OrgRole | None) -> dict[str, Any]:
    return {
        "id": org.id,
        "name": org.name,
        "allow_legacy_keys": org.allow_legacy_keys,
        "created_at": org.created_at.isoformat(),
        "role": _role(role),  # the caller's org role
    }


def environment_view(env: Environment, role: EnvRole | None) -> dict[str, Any]:
    return {"id": env.id, "name": env.name, "organization_id": env.organization_id, "role": _role(role)}


def user_view(member: Member) -> dict[str, Any]:
    return {
        "id": member.user.id,
        "email": member.user.email,
        "org_role": member.org_role.value,
        "roles": {env: _role(role) for env, role in member.roles.items()},
        "totp": member.user.totp_secret is not None,
        "created_at": member.user.created_at.isoformat(),
        "last_login_at": _iso(member.user.last_login_at),
    }


def invitation_view(pending: Pending) -> dict[str, Any]:
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


def role_change_view(change: RoleChange) -> dict[str, Any]:
    return {
        "email": change.user.email,
        "environment": change.environment.name,
        "role": _role(change.role),
        "previous_role": _role(change.previous),
        "gained": change.gained,
        "lost": change.lost,
    }


def token_view(token: PersonalAccessToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "created_at": token.created_at.isoformat(),
        "last_used_at": _iso(token.last_used_at),
        "expires_at": _iso(token.expires_at),
    }


def audit_event_view(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "occurred_at": event.occurred_at.isoformat(),
        "actor_type": event.actor_type,
        "actor": event.actor_id,
        "client_address": event.client_address,
        "action": event.action,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "summary": event.summary,
    }
