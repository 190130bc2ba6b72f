"""Who may do what. Permissions are ``resource:action``; one table maps each role to its permissions.

Organization roles grant organization-wide permissions; environment roles grant permissions inside one
environment. Payloads are PHI in production: there only ``admin`` and ``analyst`` read them.
"""

from __future__ import annotations

from enum import StrEnum

from healthway.domain.environments import EnvironmentName


class OrgRole(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class EnvRole(StrEnum):
    ADMIN = "admin"
    ENGINEER = "engineer"
    ANALYST = "analyst"
    VIEWER = "viewer"


class Permission(StrEnum):
    # organization-wide
    ORG_READ = "org:read"
    ORG_UPDATE = "org:update"
    ORG_ROLES_ASSIGN = "org_roles:assign"
    USERS_READ = "users:read"
    USERS_INVITE = "users:invite"
    USERS_REMOVE = "users:remove"
    ENV_ROLES_ASSIGN = "env_roles:assign"
    # Production admin and analyst read PHI: only owners hand those out (and change owners' roles at all).
    PHI_ROLES_ASSIGN = "phi_roles:assign"
    AUDIT_READ = "audit:read"
    # per environment
    SOURCES_READ = "sources:read"
    SOURCES_WRITE = "sources:write"
    KEYS_READ = "keys:read"
    KEYS_WRITE = "keys:write"  # create, rotate, delete and authenticate API keys
    DESTINATIONS_READ = "destinations:read"
    DESTINATIONS_WRITE = "destinations:write"
    SUBSCRIPTIONS_READ = "subscriptions:read"
    SUBSCRIPTIONS_WRITE = "subscriptions:write"
    LOGS_READ = "logs:read"  # metadata
    LOGS_READ_PAYLOAD = "logs:read_payload"  # PHI in production
    LOGS_REPLAY = "logs:replay"


ORG_ROLE_PERMISSIONS: dict[OrgRole, frozenset[Permission]] = {
    OrgRole.OWNER: frozenset(
        {
            Permission.ORG_READ,
            Permission.ORG_UPDATE,
            Permission.ORG_ROLES_ASSIGN,
            Permission.USERS_READ,
            Permission.USERS_INVITE,
            Permission.USERS_REMOVE,
            Permission.ENV_ROLES_ASSIGN,
            Permission.PHI_ROLES_ASSIGN,
            Permission.AUDIT_READ,
        }
    ),
    OrgRole.ADMIN: frozenset(
        {
            Permission.ORG_READ,
            Permission.USERS_READ,
            Permission.USERS_INVITE,
            Permission.USERS_REMOVE,
            Permission.ENV_ROLES_ASSIGN,
        }
    ),
    OrgRole.MEMBER: frozenset({Permission.ORG_READ}),
}

_READ_CONFIG = frozenset(
    {
        Permission.SOURCES_READ,
        Permission.KEYS_READ,
        Permission.DESTINATIONS_READ,
        Permission.SUBSCRIPTIONS_READ,
        Permission.LOGS_READ,
    }
)
_CONFIGURE = frozenset(
    {
        Permission.SOURCES_WRITE,
        Permission.KEYS_WRITE,
        Permission.DESTINATIONS_WRITE,
        Permission.SUBSCRIPTIONS_WRITE,
        Permission.LOGS_REPLAY,
    }
)

ENV_ROLE_PERMISSIONS: dict[EnvRole, frozenset[Permission]] = {
    EnvRole.ADMIN: _READ_CONFIG | _CONFIGURE | {Permission.LOGS_READ_PAYLOAD},
    EnvRole.ENGINEER: _READ_CONFIG | _CONFIGURE,
    EnvRole.ANALYST: _READ_CONFIG | {Permission.LOGS_READ_PAYLOAD},
    EnvRole.VIEWER: _READ_CONFIG,
}

ENV_PERMISSIONS = frozenset().union(*ENV_ROLE_PERMISSIONS.values())


def env_permissions(role: EnvRole | None, environment: EnvironmentName) -> frozenset[Permission]:
    """What ``role`` may do in ``environment``. Outside production nothing is PHI, so every role reads payloads."""
    if role is None:
        return frozenset()
    granted = ENV_ROLE_PERMISSIONS[role]
    if environment is not EnvironmentName.PRODUCTION:
        granted |= {Permission.LOGS_READ_PAYLOAD}
    return granted


def grants_phi(role: EnvRole | None, environment: EnvironmentName) -> bool:
    """Whether ``role`` reads payloads that are PHI (production admin and analyst)."""
    return environment is EnvironmentName.PRODUCTION and Permission.LOGS_READ_PAYLOAD in env_permissions(
        role, environment
    )


def permission_change(old: EnvRole | None, new: EnvRole | None, environment: EnvironmentName) -> dict[str, list[str]]:
    """What a user gains and loses when their role in ``environment`` changes from ``old`` to ``new``."""
    before, after = env_permissions(old, environment), env_permissions(new, environment)
    return {"gained": sorted(after - before), "lost": sorted(before - after)}
