"""The role table of DESIGN §1: what each org role and environment role may do, and the production payload rule."""

from __future__ import annotations

import re

import pytest

from healthway.domain.environments import EnvironmentName
from healthway.domain.permissions import (
    ENV_PERMISSIONS,
    ENV_ROLE_PERMISSIONS,
    ORG_ROLE_PERMISSIONS,
    EnvRole,
    OrgRole,
    Permission,
    env_permissions,
    permission_change,
)

P = Permission
PRODUCTION, DEVELOPMENT, STAGING = EnvironmentName.PRODUCTION, EnvironmentName.DEVELOPMENT, EnvironmentName.STAGING


def test_permissions_follow_the_resource_action_grammar() -> None:
    for permission in Permission:
        assert re.fullmatch(r"[a-z_]+:[a-z_]+", permission.value), permission


def test_every_permission_is_granted_by_some_role() -> None:
    """A permission no role holds is a permission someone forgot to put in the table."""
    granted = set().union(*ORG_ROLE_PERMISSIONS.values(), *ENV_ROLE_PERMISSIONS.values())
    assert granted == set(Permission)


def test_org_and_env_permissions_do_not_overlap() -> None:
    assert ENV_PERMISSIONS.isdisjoint(set().union(*ORG_ROLE_PERMISSIONS.values()))


def test_org_roles() -> None:
    owner, admin, member = (ORG_ROLE_PERMISSIONS[r] for r in OrgRole)
    assert member == {P.ORG_READ}
    assert member < admin < owner
    assert {P.USERS_INVITE, P.ENV_ROLES_ASSIGN} <= admin  # org admins invite users and assign environment roles
    # Owners: settings, org roles, audit, and the environment roles that read PHI in production.
    assert owner - admin == {P.ORG_UPDATE, P.ORG_ROLES_ASSIGN, P.AUDIT_READ, P.PHI_ROLES_ASSIGN}


@pytest.mark.parametrize("environment", list(EnvironmentName))
def test_only_engineers_and_admins_touch_api_keys(environment: EnvironmentName) -> None:
    writers = {role for role in EnvRole if P.KEYS_WRITE in env_permissions(role, environment)}
    assert writers == {EnvRole.ENGINEER, EnvRole.ADMIN}


@pytest.mark.parametrize("environment", list(EnvironmentName))
def test_every_role_reads_config_and_log_metadata(environment: EnvironmentName) -> None:
    for role in EnvRole:
        assert {P.SOURCES_READ, P.KEYS_READ, P.DESTINATIONS_READ, P.SUBSCRIPTIONS_READ, P.LOGS_READ} <= env_permissions(
            role, environment
        )


def test_viewers_and_analysts_change_nothing() -> None:
    writes = {p for p in Permission if p.value.endswith((":write", ":replay"))}
    for role in (EnvRole.VIEWER, EnvRole.ANALYST):
        for environment in EnvironmentName:
            assert not writes & env_permissions(role, environment)


def test_in_production_only_admins_and_analysts_read_payloads() -> None:
    readers = {role for role in EnvRole if P.LOGS_READ_PAYLOAD in env_permissions(role, PRODUCTION)}
    assert readers == {EnvRole.ADMIN, EnvRole.ANALYST}


@pytest.mark.parametrize("environment", [DEVELOPMENT, STAGING])
@pytest.mark.parametrize("role", list(EnvRole))
def test_outside_production_every_role_reads_payloads(environment: EnvironmentName, role: EnvRole) -> None:
    assert P.LOGS_READ_PAYLOAD in env_permissions(role, environment)


@pytest.mark.parametrize("environment", list(EnvironmentName))
def test_no_role_means_no_access(environment: EnvironmentName) -> None:
    assert env_permissions(None, environment) == frozenset()


def test_permission_change_engineer_to_analyst_in_production() -> None:
    change = permission_change(EnvRole.ENGINEER, EnvRole.ANALYST, PRODUCTION)
    assert change == {
        "gained": ["logs:read_payload"],
        "lost": ["destinations:write", "keys:write", "logs:replay", "sources:write", "subscriptions:write"],
    }


def test_permission_change_in_development_shows_no_payload_difference() -> None:
    change = permission_change(EnvRole.VIEWER, EnvRole.ANALYST, DEVELOPMENT)
    assert change == {"gained": [], "lost": []}


def test_permission_change_removing_a_role_loses_everything() -> None:
    change = permission_change(EnvRole.VIEWER, None, PRODUCTION)
    assert change["gained"] == []
    assert set(change["lost"]) == ENV_ROLE_PERMISSIONS[EnvRole.VIEWER]
    assert permission_change(None, None, PRODUCTION) == {"gained": [], "lost": []}
