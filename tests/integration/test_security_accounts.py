"""Issue 14, people, logins, roles and replay (items 7, 8, 9, 18), through the Platform API."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from healthway.app import build
from healthway.domain.permissions import EnvRole
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import AuditEvent, User
from healthway.transports.http.app import create_app
from tests.factories import World, make_destination, make_log, make_org, make_source, make_subscription
from tests.integration.platform_actions import make_member


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Api:
    client: TestClient
    db: Database
    clock: Clock
    world: World

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @property
    def owner(self) -> dict[str, str]:
        return self.bearer(self.world.admin_token)

    def member(self, email: str, **kwargs: Any) -> tuple[User, dict[str, str]]:
        with self.db.session() as session:
            user, token = make_member(session, self.world, email, **kwargs)
        return user, self.bearer(token)

    def actions(self, action: str) -> list[AuditEvent]:
        with self.db.session() as session:
            return list(session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action)))


def basic(email: str, password: str, **extra: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{email}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}", **extra}


def make_api(db: Database, **overrides: Any) -> Iterator[Api]:
    clock = Clock(datetime(2030, 1, 1, 12, 0, tzinfo=UTC))
    with db.session() as session:
        world = make_org(session)
    settings = Settings(_env_file=None, allow_loopback_destinations=True, allow_http_destinations=True)
    with TestClient(create_app(build(settings, db=db, clock=clock, **overrides))) as client:
        yield Api(client, db, clock, world)


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    yield from make_api(db)


# -- item 8: replay --------------------------------------------------------------------------------------------


def test_production_engineer_replays_only_to_destinations_the_log_went_to(api: Api) -> None:
    with api.db.session() as session:
        prod = api.world.envs["production"]
        source = make_source(session, prod)
        routed = make_destination(session, prod, name="Routed")
        make_subscription(session, source, routed)
        log_id = make_log(session, source).id
        own = make_destination(session, prod, name="Engineer's own").id
    _, engineer = api.member("eng@northwind.example.org", env_role=EnvRole.ENGINEER)
    url = f"/platform/v1/logs/{log_id}/replay"

    refused = api.client.post(url, json={"destination": own}, headers=engineer)
    assert refused.status_code == 403 and "logs:read_payload" in refused.json()["error"]["message"]
    assert api.client.post(url, json={"destination": routed.id}, headers=engineer).status_code == 201
    assert api.client.post(url, headers=engineer).status_code == 201
    assert api.actions("payload:view") == []

    # The production admin may read payloads, so may send one somewhere new: audited as a disclosure.
    sent = api.client.post(url, json={"destination": own}, headers=api.owner)
    assert sent.status_code == 201 and [d["destination_id"] for d in sent.json()["deliveries"]] == [own]
    [disclosure] = api.actions("payload:view")
    assert disclosure.subject_id == log_id and disclosure.summary["destinations"] == [own]
    assert disclosure.summary["via"] == "replay"
    replays = api.actions("log:replay")
    assert [r.summary["new_destinations"] for r in replays] == [[], [], [own]]
