"""The audit trail: every audited action writes exactly one event (never a secret), the chain detects edits, and
owners read it through the Platform API with filters and pagination."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from healthway.app import build
from healthway.domain.permissions import OrgRole
from healthway.services import audit
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import AuditEvent, utcnow
from healthway.testing import CHEAP_PASSWORDS, http_app
from tests.factories import World, make_org, make_source
from tests.integration.platform_actions import make_member


@dataclass
class Api:
    client: TestClient
    db: Database
    world: World

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.world.admin_token}"}

    def last_id(self) -> int:
        with self.db.session() as session:
            return session.scalar(sa.select(sa.func.max(AuditEvent.id))) or 0

    def events_after(self, event_id: int) -> list[AuditEvent]:
        with self.db.session() as session:
            return list(session.scalars(sa.select(AuditEvent).where(AuditEvent.id > event_id).order_by(AuditEvent.id)))


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    with db.session() as session:
        world = make_org(session)
    with TestClient(http_app(build(Settings(_env_file=None), db=db, passwords=CHEAP_PASSWORDS))) as client:
        yield Api(client, db, world)


def _basic(email: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()}


def _invite(api: Api) -> Any:
    return api.client.post("/platform/v1/users", headers=api.admin, json={"email": "new@example.org"})


def _join(api: Api) -> None:
    """new@example.org as a member (an invitation they accepted): roles are given to members only."""
    with api.db.session() as session:
        make_member(session, api.world, "new@example.org")


def _assign(role: str | None) -> Callable[[Api], Any]:
    def act(api: Api) -> Any:
        if api.client.get("/platform/v1/users/new@example.org", headers=api.admin).status_code == 404:
            _join(api)
        url = "/platform/v1/users/new@example.org/roles/production"
        if role is None:  # removing needs something to remove
            api.client.put(url, headers=api.admin, json={"role": "viewer"})
        return url, api.client.put(url, headers=api.admin, json={"role": role})

    return act


def _revoke(api: Api) -> Any:
    token_id = api.client.post("/platform/v1/tokens", headers=api.admin).json()["id"]
    return api.client.delete(f"/platform/v1/tokens/{token_id}", headers=api.admin)


def _source_action(verb: str) -> Callable[[Api], Any]:
    def act(api: Api) -> Any:
        with api.db.session() as session:
            source = make_source(session, api.world.envs["development"], "Before")
        url = f"/platform/v1/sources/{source.id}"
        return (
            api.client.patch(url, headers=api.admin, json={"name": "After"})
            if verb == "update"
            else (api.client.delete(url, headers=api.admin))
        )

    return act


# (action tag, how to perform it after any set-up it needs). Set-up events are skipped by taking the last one.
AUDITED: list[tuple[str, Callable[[Api], Any]]] = [
    ("invitation:create", _invite),
    ("role:assign", _assign("engineer")),
    ("role:remove", _assign(None)),
    ("token:create", lambda api: api.client.post("/platform/v1/tokens", headers=api.admin, json={"name": "ci"})),
    ("token:revoke", _revoke),
    ("org:update", lambda api: api.client.patch(
        f"/platform/v1/organizations/{api.world.org.id}", headers=api.admin, json={"allow_legacy_keys": False}
    )),
    ("source:create", lambda api: api.client.post(
        "/platform/v1/sources", headers=api.admin, json={"environment": "staging", "name": "EHR"}
    )),
    ("source:update", _source_action("update")),
    ("source:delete", _source_action("delete")),
    ("user:login_failed", lambda api: api.client.post(
        "/platform/v1/tokens", headers=_basic(api.world.admin.email, "a wrong password")
    )),
]  # fmt: skip


@pytest.mark.parametrize(("tag", "act"), AUDITED, ids=[t for t, _ in AUDITED])
def test_each_action_writes_exactly_one_event(api: Api, tag: str, act: Callable[[Api], Any]) -> None:
    before = api.last_id()
    act(api)
    events = api.events_after(before)
    assert events, f"no event for {tag}"
    last = events[-1]
    assert last.action == tag
    assert [e.action for e in events].count(tag) == 1, [e.action for e in events]
    assert last.organization_id == api.world.org.id
    assert api.world.admin_password not in str(last.summary) and "hwpat_" not in str(last.summary)


def test_login_writes_one_login_event_and_one_token_event(api: Api) -> None:
    before = api.last_id()
    response = api.client.post("/platform/v1/tokens", headers=_basic(api.world.admin.email, api.world.admin_password))
    assert response.status_code == 201
    events = api.events_after(before)
    assert [e.action for e in events] == ["user:login", "token:create"]
    assert events[0].actor_id == api.world.admin.email and events[0].client_address == "testclient"
    assert response.json()["token"] not in str([e.summary for e in events])


def test_unchanged_role_writes_no_event(api: Api) -> None:
    url = f"/platform/v1/users/{api.world.admin.email}/roles/production"
    before = api.last_id()
    assert api.client.put(url, headers=api.admin, json={"role": "admin"}).status_code == 200
    assert api.events_after(before) == []


def test_role_change_event_says_what_changed(api: Api) -> None:
    _join(api)
    api.client.put("/platform/v1/users/new@example.org/roles/production", headers=api.admin, json={"role": "analyst"})
    event = api.events_after(0)[-1]
    assert (event.action, event.subject_id, event.actor_type, event.actor_id) == (
        "role:assign", "new@example.org", "user", api.world.admin.email,
    )  # fmt: skip
    assert event.summary["environment"] == "production" and event.summary["role"] == [None, "analyst"]
    assert "logs:read_payload" in event.summary["gained"] and event.summary["lost"] == []


def test_failed_login_never_stores_the_password(api: Api) -> None:
    api.client.post("/platform/v1/tokens", headers=_basic(api.world.admin.email, "my-secret-guess-123"))
    api.client.post("/platform/v1/tokens", headers=_basic("nobody@example.org", "my-secret-guess-123"))
    with api.db.session() as session:
        dump = str([(e.summary, e.subject_id, e.actor_id) for e in session.scalars(sa.select(AuditEvent))])
    assert "my-secret-guess-123" not in dump
    failed = [e for e in api.events_after(0) if e.action == "user:login_failed"]
    assert [e.organization_id for e in failed] == [api.world.org.id, None]  # an unknown account belongs to no org


def test_editing_any_field_breaks_the_chain(api: Api) -> None:
    _invite(api)
    api.client.post("/platform/v1/tokens", headers=api.admin)
    with api.db.session() as session:
        report = audit.verify_chain(session)
        assert report.ok and report.events >= 3
        victim = session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id).offset(1).limit(1)).one()
        victim_id = victim.id
    with api.db.engine.begin() as conn:  # a tamperer edits the row behind the application's back
        conn.execute(sa.update(AuditEvent).where(AuditEvent.id == victim_id).values(actor_id="someone-else"))
    with api.db.session() as session:
        report = audit.verify_chain(session)
    assert not report.ok and report.first_broken_id == victim_id


def test_deleting_an_event_breaks_the_chain(api: Api) -> None:
    _invite(api)
    api.client.post("/platform/v1/tokens", headers=api.admin)
    with api.db.session() as session:
        ids = list(session.scalars(sa.select(AuditEvent.id).order_by(AuditEvent.id)))
    with api.db.engine.begin() as conn:
        conn.execute(sa.delete(AuditEvent).where(AuditEvent.id == ids[1]))
    with api.db.session() as session:
        assert audit.verify_chain(session).first_broken_id == ids[2]


# -- reading the trail ---------------------------------------------------------------------------------------


def test_owners_read_events_newest_first_with_filters_and_pages(api: Api) -> None:
    for i in range(3):
        api.client.post("/platform/v1/tokens", headers=api.admin, json={"name": f"t{i}"})
    _invite(api)
    url = "/platform/v1/audit-events"
    everything = api.client.get(url, headers=api.admin).json()["audit_events"]
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    assert everything[0]["action"] == "invitation:create" and everything[-1]["action"] == "org:create"
    tokens = api.client.get(url, headers=api.admin, params={"action": "token:create"}).json()["audit_events"]
    assert [e["summary"]["name"] for e in tokens] == ["t2", "t1", "t0"]
    by_cli = api.client.get(url, headers=api.admin, params={"actor": "cli"}).json()["audit_events"]
    assert [e["action"] for e in by_cli] == ["org:create"]
    page1 = api.client.get(url, headers=api.admin, params={"limit": 2}).json()
    page2 = api.client.get(url, headers=api.admin, params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    assert [e["id"] for e in page1["audit_events"] + page2["audit_events"]] == [e["id"] for e in everything[:4]]
    now = utcnow()
    future = api.client.get(url, headers=api.admin, params={"since": (now + timedelta(hours=1)).isoformat()}).json()
    past = api.client.get(url, headers=api.admin, params={"until": (now - timedelta(hours=1)).isoformat()}).json()
    assert future["audit_events"] == past["audit_events"] == []
    window = api.client.get(
        url, headers=api.admin, params={"since": (now - timedelta(hours=1)).replace(tzinfo=None).isoformat()}
    ).json()
    assert len(window["audit_events"]) == len(everything)
    assert api.client.get(url, headers=api.admin, params={"cursor": "garbage"}).status_code == 400


@pytest.mark.parametrize("org_role", [OrgRole.ADMIN, OrgRole.MEMBER])
def test_only_owners_read_the_trail(api: Api, org_role: OrgRole) -> None:
    with api.db.session() as session:
        _, token = make_member(session, api.world, "x@northwind.example.org", org_role=org_role)
    response = api.client.get("/platform/v1/audit-events", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


def test_other_organizations_events_stay_out(api: Api) -> None:
    with api.db.session() as session:
        other = make_org(session, name="Lakeview", email="owner@lakeview.example.org")
    api.client.post("/platform/v1/tokens", headers={"Authorization": f"Bearer {other.admin_token}"})
    ours = api.client.get("/platform/v1/audit-events", headers=api.admin).json()["audit_events"]
    assert all("lakeview" not in str(e) for e in ours)
