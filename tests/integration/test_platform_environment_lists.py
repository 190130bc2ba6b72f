"""Environment-scoped lists without ``?environment=``: every environment the caller may read (DESIGN §3's
``GET /platform/v1/sources`` and its peers), with cursor paging across them; ``?environment=`` unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from healthway.app import build
from healthway.domain.actors import CLI
from healthway.domain.outbound import OutboundPolicy
from healthway.domain.permissions import EnvRole, OrgRole
from healthway.services import destinations, legacy_keys, oauth_keys, subscriptions
from healthway.services.oauth_keys import KeyMaterial
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import EnvironmentRole, User
from healthway.testing import http_app
from tests.factories import World, make_org, make_source
from tests.integration.platform_actions import make_member

ENVIRONMENTS = ("development", "staging", "production")


@dataclass
class Setup:
    client: TestClient
    world: World
    dev_only: str  # token of an engineer in development only
    everywhere: str  # token of an org admin who is an admin in all three environments
    nowhere: str  # token of a member without any environment role


def _add_environment_config(session: Session, world: World, name: str) -> None:
    env = world.envs[name]
    source = make_source(session, env, f"EHR {name}")
    destination, _ = destinations.create(
        session,
        actor=CLI,
        environment=env,
        name=f"hook {name}",
        kind="webhook",
        config={"url": "https://receiver.example.org/hook"},
        outbound=OutboundPolicy(),
    )
    subscriptions.create(session, actor=CLI, source=source, destination=destination, environment=env)
    legacy_keys.create(session, actor=CLI, source=source, environment=env)
    oauth_keys.create(session, actor=CLI, environment=env, material=KeyMaterial(generate=True, alg="ES384"))


def _dev_engineer(session: Session, world: World) -> str:
    user, token = make_member(session, world, "dev@northwind.example.org")
    session.add(EnvironmentRole(user_id=user.id, environment_id=world.envs["development"].id, role="engineer"))
    session.flush()
    return token


@pytest.fixture
def setup(db: Database) -> Iterator[Setup]:
    with db.session() as session:
        world = make_org(session)
        for name in ENVIRONMENTS:
            _add_environment_config(session, world, name)
        dev_only = _dev_engineer(session, world)
        _, everywhere = make_member(
            session, world, "admin2@northwind.example.org", org_role=OrgRole.ADMIN, env_role=EnvRole.ADMIN
        )
        _, nowhere = make_member(session, world, "none@northwind.example.org")
        assert session.query(User).count() == 4
    with TestClient(http_app(build(Settings(_env_file=None), db=db))) as client:
        yield Setup(client, world, dev_only, everywhere, nowhere)


def _get(setup: Setup, token: str, path: str) -> dict[str, list[dict[str, object]]]:
    response = setup.client.get(f"/platform/v1/{path}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    body: dict[str, list[dict[str, object]]] = response.json()
    return body


LISTS = [
    ("sources", "sources", "environment"),
    ("destinations", "destinations", "environment"),
    ("subscriptions", "subscriptions", "environment"),
    ("oauth-keys", "oauth_keys", "environment"),
    ("legacy-keys", "legacy_keys", None),
]


@pytest.mark.parametrize(("path", "key", "field"), LISTS)
def test_a_development_engineer_sees_only_development(setup: Setup, path: str, key: str, field: str | None) -> None:
    items = _get(setup, setup.dev_only, path)[key]
    assert len(items) == 1
    if field:
        assert items[0][field] == "development"


def test_listed_environments_are_those_of_the_rows(setup: Setup) -> None:
    for path, key, field in LISTS:
        items = _get(setup, setup.everywhere, path)[key]
        assert len(items) == 3, path
        if field:
            assert sorted(str(item[field]) for item in items) == sorted(ENVIRONMENTS), path


def test_an_admin_of_every_environment_sees_all_and_pages_across_them(setup: Setup) -> None:
    first = _get(setup, setup.everywhere, "sources?limit=2")
    assert len(first["sources"]) == 2 and first["next_cursor"]
    rest = _get(setup, setup.everywhere, f"sources?limit=2&cursor={first['next_cursor']}")
    assert len(rest["sources"]) == 1 and rest["next_cursor"] is None
    names = [s["name"] for s in first["sources"] + rest["sources"]]
    assert sorted(names) == sorted(f"EHR {name}" for name in ENVIRONMENTS)


def test_naming_an_environment_still_lists_only_it(setup: Setup) -> None:
    items = _get(setup, setup.everywhere, "sources?environment=staging")["sources"]
    assert [s["environment"] for s in items] == ["staging"]
    denied = setup.client.get(
        "/platform/v1/sources?environment=staging", headers={"Authorization": f"Bearer {setup.dev_only}"}
    )
    assert denied.status_code == 403


def test_a_member_without_any_environment_role_is_refused_as_for_logs(setup: Setup) -> None:
    headers = {"Authorization": f"Bearer {setup.nowhere}"}
    assert setup.client.get("/platform/v1/logs", headers=headers).status_code == 403
    assert setup.client.get("/platform/v1/sources", headers=headers).status_code == 403
