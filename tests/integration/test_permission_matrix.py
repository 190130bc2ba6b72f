"""The permission matrix: every org role x every environment role x every Platform API action (platform_actions.py),
asserting the status the role table (domain/permissions.py) implies: the action's success status when the caller's
roles grant its permission, 403 when they do not, 404 for a caller of another organization, 401 without a token.

The expectations are computed from ORG_ROLE_PERMISSIONS and env_permissions, never written by hand, so changing the
role table changes what is asserted, and a new route fails the registry check until it is given a row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from healthway.app import build
from healthway.domain.environments import EnvironmentName
from healthway.domain.permissions import ORG_ROLE_PERMISSIONS, EnvRole, OrgRole, Permission, env_permissions
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import User
from healthway.testing import CHEAP_PASSWORDS, http_app
from tests.factories import World, make_org
from tests.integration.platform_actions import ACTIONS, PASSWORD, Action, make_member

# Permissions whose endpoints arrive with later issues. Remove a permission from here when its first row is added
# to ACTIONS; the last test below says when that is due. (Payload reading is also a part of logs.get, which
# test_logs.py checks per role; replaying to a new destination needs it too.)
NOT_YET_EXPOSED: set[Permission] = set()


@dataclass(frozen=True)
class Caller:
    org_role: OrgRole | None  # None: a member of another organization (its owner, with every role there)
    env_role: EnvRole | None
    user: User
    token: str

    def __str__(self) -> str:
        if self.org_role is None:
            return "outsider"
        return f"{self.org_role.value}/{self.env_role.value if self.env_role else 'none'}"


def expected_status(action: Action, caller: Caller) -> int:
    if caller.org_role is None:
        return action.success if action.personal else 404
    if action.permission is None:
        return action.success
    granted = ORG_ROLE_PERMISSIONS[caller.org_role] | env_permissions(
        caller.env_role, EnvironmentName(action.environment)
    )
    needed = {action.permission} | ({action.also} if action.also else set())
    return action.success if needed <= granted else 403


@dataclass
class Matrix:
    db: Database
    client: TestClient
    world: World
    callers: list[Caller]


@pytest.fixture
def matrix(db: Database) -> Iterator[Matrix]:
    with db.session() as session:
        world = make_org(session)
        other = make_org(session, name="Lakeview Clinic", email="owner@lakeview.example.org")
        callers = [Caller(None, EnvRole.ADMIN, other.admin, other.admin_token)]
        for org_role in OrgRole:
            for env_role in [*EnvRole, None]:
                email = f"{org_role.value}-{env_role.value if env_role else 'none'}@northwind.example.org"
                user, token = make_member(session, world, email, org_role=org_role, env_role=env_role)
                callers.append(Caller(org_role, env_role, user, token))
    with TestClient(http_app(build(Settings(_env_file=None), db=db, passwords=CHEAP_PASSWORDS))) as client:
        yield Matrix(db, client, world, callers)


def _mismatches(matrix: Matrix, action: Action) -> list[str]:
    found = []
    for caller in matrix.callers:
        with matrix.db.session() as session:
            request = action.request(matrix.world, caller.user, session)
        if action.basic_auth:
            response = matrix.client.request(**request, auth=(caller.user.email, PASSWORD))
        else:
            response = matrix.client.request(**request, headers={"Authorization": f"Bearer {caller.token}"})
        want = expected_status(action, caller)
        if response.status_code != want:
            found.append(f"{action.name} ({action.permission}) as {caller}: got {response.status_code}, want {want}")
        elif want in (403, 404):
            assert response.json()["error"]["code"] == ("forbidden" if want == 403 else "not_found")
    return found


PARTS = 4  # slices of the registry, so that parallel test workers share the matrix


@pytest.mark.parametrize("part", range(PARTS))
def test_permission_matrix(matrix: Matrix, part: int) -> None:
    """Every action x every caller, in a few tests per database: the fixture (two organizations, sixteen callers)
    is built once per slice of actions instead of once per action."""
    mismatches = [line for action in ACTIONS[part::PARTS] for line in _mismatches(matrix, action)]
    assert not mismatches, "\n".join(mismatches)


def test_without_a_valid_token_every_action_is_401(matrix: Matrix) -> None:
    failures = []
    for action in ACTIONS:
        for authorization in (None, "Bearer hwpat_unknown", "Basic bm9ib2R5"):
            with matrix.db.session() as session:
                request = action.request(matrix.world, matrix.world.admin, session)
            headers = {"Authorization": authorization} if authorization else {}
            response = matrix.client.request(**request, headers=headers)
            if response.status_code != 401 or response.json()["error"]["code"] != "unauthenticated":
                failures.append(f"{action.name} with {authorization}: {response.status_code}")
    assert not failures, "\n".join(failures)


def _platform_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """Read from the OpenAPI document: it lists every route however routers are nested."""
    paths = http_app(build(Settings(_env_file=None, data_dir=tmp_path))).openapi()["paths"]
    return {(method.upper(), path) for path, item in paths.items() if path.startswith("/platform/") for method in item}


def test_every_platform_route_is_in_the_registry(tmp_path: Path) -> None:
    """A new endpoint cannot skip the matrix: give it a row in platform_actions.ACTIONS."""
    registered = {(a.method, a.route) for a in ACTIONS}
    routes = _platform_routes(tmp_path)
    assert routes - registered == set(), "routes missing from tests/integration/platform_actions.py"
    assert registered - routes == set(), "registry rows naming routes the app does not have"


def test_every_permission_is_exercised_or_awaited() -> None:
    """Each permission of the role table is checked by some action, or its endpoints are still to come."""
    used = {p for a in ACTIONS for p in (a.permission, a.also) if p is not None}
    assert set(Permission) - used - NOT_YET_EXPOSED == set()
