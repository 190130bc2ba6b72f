"""Destinations, subscriptions, routing at intake and replay through the Platform API and ``/endpoint``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from healthway.domain.actors import CLI
from healthway.domain.permissions import EnvRole
from healthway.services import organizations, personal_tokens, users
from healthway.storage.db import Database
from healthway.storage.models import AuditEvent, Delivery, Membership
from healthway.testing import CHEAP_PASSWORDS
from tests.integration.test_intake import NEW_PATIENT, Env, make_env

HL7_FILTER: dict[str, Any] = {"message_types": ["ADT^*"]}


@pytest.fixture
def env(db: Database) -> Iterator[Env]:
    yield from make_env(db)


def admin(env: Env) -> dict[str, str]:
    return {"Authorization": f"Bearer {env.world.admin_token}"}


def role_headers(env: Env, role: EnvRole) -> dict[str, str]:
    with env.db.session() as session:
        user, _ = users.find_or_create(
            session, email=f"{role}@example.org", password="a long enough passphrase", passwords=CHEAP_PASSWORDS
        )
        session.add(Membership(user_id=user.id, organization_id=env.world.org.id, role="member"))
        session.flush()
        users.assign_env_role(session, user=user, environment=env.world.envs["development"], role=role)
        _, token = personal_tokens.create(session, user=user, name="t")
    return {"Authorization": f"Bearer {token}"}


def create_destination(env: Env, name: str = "Hook", **fields: Any) -> dict[str, Any]:
    fields = fields or {"kind": "webhook", "url": "http://127.0.0.1:9/hook"}
    response = env.client.post(
        "/platform/v1/destinations", json={"environment": "development", "name": name, **fields}, headers=admin(env)
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def subscribe(env: Env, destination_id: str, source_id: str | None = None, **body: Any) -> Any:
    payload = {"source": source_id or env.ehr.id, "destination": destination_id, **body}
    return env.client.post("/platform/v1/subscriptions", json=payload, headers=admin(env))


def deliveries_of(env: Env, log_id: str) -> list[str]:
    with env.db.session() as session:
        return sorted(session.scalars(sa.select(Delivery.destination_id).where(Delivery.log_id == log_id)))


def test_destinations_of_every_kind_never_show_their_credentials_again(env: Env) -> None:
    hook = create_destination(env, kind="webhook", url="https://partner.example.org/in", verification_token="vt")
    assert hook["signing_secret"].startswith("whsec_") and hook["kind"] == "webhook"
    sftp = create_destination(
        env,
        "Drop",
        kind="sftp",
        host="127.0.0.1",
        port=22,
        username="u",
        password="pw-123",
        path="/in",
        host_key_sha256="SHA256:" + "A" * 43,
    )
    mllp = create_destination(env, "Lab", kind="mllp", host="127.0.0.1", port=2575, tls=True)
    fhir = create_destination(env, "FHIR", kind="fhir", url="https://fhir.example.org/r4")
    assert "signing_secret" not in sftp and mllp["config"]["tls"] is True and fhir["kind"] == "fhir"
    listed = env.client.get("/platform/v1/destinations?environment=development", headers=admin(env)).json()
    text = json.dumps(listed)
    assert len(listed["destinations"]) == 4 and listed["next_cursor"] is None
    assert hook["signing_secret"] not in text and "pw-123" not in text and '"vt"' not in text
    shown = env.client.get(f"/platform/v1/destinations/{sftp['id']}", headers=admin(env)).json()
    assert shown["config"]["has_password"] is True and "password" not in shown["config"]
    with env.db.session() as session:
        actions = session.scalars(sa.select(AuditEvent.action).where(AuditEvent.subject_id == hook["id"])).all()
    assert actions == ["destination:create"]


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "webhook", "url": "ftp://x"},
        {"kind": "mllp", "host": "h", "port": 0},
        {"kind": "sftp", "host": "h", "port": 22, "username": "u"},  # no password or key
        {"kind": "sftp", "host": "h", "port": 22, "username": "u", "password": "p", "host_key_sha256": "nope"},
        {"kind": "carrier-pigeon"},
    ],
)
def test_invalid_destinations_are_400(env: Env, fields: dict[str, Any]) -> None:
    response = env.client.post(
        "/platform/v1/destinations", json={"environment": "development", "name": "x", **fields}, headers=admin(env)
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_roles_and_organizations_guard_destinations_and_subscriptions(env: Env) -> None:
    hook = create_destination(env)
    viewer = role_headers(env, EnvRole.VIEWER)
    body = {"environment": "development", "name": "x", "kind": "fhir", "url": "https://f.example.org"}
    assert env.client.post("/platform/v1/destinations", json=body, headers=viewer).status_code == 403
    assert env.client.get(f"/platform/v1/destinations/{hook['id']}", headers=viewer).status_code == 200
    sub = {"source": env.ehr.id, "destination": hook["id"]}
    assert env.client.post("/platform/v1/subscriptions", json=sub, headers=viewer).status_code == 403
    engineer = role_headers(env, EnvRole.ENGINEER)
    assert env.client.post("/platform/v1/subscriptions", json=sub, headers=engineer).status_code == 201
    with env.db.session() as session:
        other = organizations.create(
            session, actor=CLI, name="Other", owner_email="o@other.example.org", passwords=CHEAP_PASSWORDS
        )
        owner = users.find_by_email(session, "o@other.example.org")
        assert owner is not None and other.organization
        _, outsider_token = personal_tokens.create(session, user=owner, name="t")
    outsider = {"Authorization": f"Bearer {outsider_token}"}
    assert env.client.get(f"/platform/v1/destinations/{hook['id']}", headers=outsider).status_code == 404
    assert env.client.delete(f"/platform/v1/destinations/{hook['id']}", headers=outsider).status_code == 404


def test_subscriptions_filter_route_and_narrow_by_meta_destinations(env: Env) -> None:
    everything, admits, other = (create_destination(env, n) for n in ("All", "Admits", "Other"))
    created = subscribe(env, everything["id"], data_models=["PatientAdmin"], ordering="parallel")
    assert created.status_code == 201 and created.json()["ordering"] == "parallel"
    assert subscribe(env, admits["id"], **HL7_FILTER).json()["message_types"] == ["ADT^*"]
    assert subscribe(env, everything["id"]).status_code == 409
    assert subscribe(env, other["id"], message_types=["not a type"]).status_code == 400
    assert subscribe(env, other["id"], ordering="random").status_code == 400

    log_id = env.post(NEW_PATIENT).json()["Meta"]["Logs"][0]["ID"]
    assert deliveries_of(env, log_id) == [everything["id"]]  # the ADT^* filter does not match JSON

    narrowed = json.loads(NEW_PATIENT)
    narrowed["Meta"]["Destinations"] = [{"ID": other["id"]}]
    refused = env.post(json.dumps(narrowed).encode())
    assert refused.status_code == 400 and other["id"][:8] in refused.json()["error"]["message"]
    narrowed["Meta"]["Destinations"] = [{"ID": admits["id"]}]
    accepted = env.post(json.dumps(narrowed).encode())
    assert accepted.status_code == 202
    assert deliveries_of(env, accepted.json()["Meta"]["Logs"][0]["ID"]) == []  # named, but its filter says no

    listed = env.client.get(
        f"/platform/v1/subscriptions?environment=development&source={env.ehr.id}", headers=admin(env)
    ).json()
    assert len(listed["subscriptions"]) == 2
    sub_id = listed["subscriptions"][0]["id"]
    assert env.client.delete(f"/platform/v1/subscriptions/{sub_id}", headers=admin(env)).status_code == 204


def test_replay_creates_new_deliveries_of_the_same_log_and_is_audited(env: Env) -> None:
    first, second = create_destination(env, "One"), create_destination(env, "Two")
    subscribe(env, first["id"])
    log_id = env.post(NEW_PATIENT).json()["Meta"]["Logs"][0]["ID"]
    replayed = env.client.post(f"/platform/v1/logs/{log_id}/replay", headers=admin(env))
    assert replayed.status_code == 201
    assert replayed.json()["log_id"] == log_id
    assert [d["destination_id"] for d in replayed.json()["deliveries"]] == [first["id"]]
    to_second = env.client.post(
        f"/platform/v1/logs/{log_id}/replay", json={"destination": second["id"]}, headers=admin(env)
    )
    assert [d["status"] for d in to_second.json()["deliveries"]] == ["pending"]
    assert deliveries_of(env, log_id) == sorted([first["id"], first["id"], second["id"]])
    viewer = role_headers(env, EnvRole.VIEWER)
    assert env.client.post(f"/platform/v1/logs/{log_id}/replay", headers=viewer).status_code == 403
    assert env.client.post("/platform/v1/logs/nope/replay", headers=admin(env)).status_code == 404
    with env.db.session() as session:
        replays = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "log:replay")).all()
    assert len(replays) == 2 and replays[0].subject_id == log_id


def test_switching_subscriptions_and_destinations_off_and_on(env: Env) -> None:
    destination = create_destination(env)
    subscription = subscribe(env, destination["id"]).json()
    url = f"/platform/v1/subscriptions/{subscription['id']}"

    off = env.client.patch(url, json={"enabled": False}, headers=admin(env))
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert deliveries_of(env, env.post(NEW_PATIENT).json()["Meta"]["Logs"][0]["ID"]) == []
    assert env.client.patch(url, json={"enabled": True}, headers=admin(env)).json()["enabled"] is True
    queued = env.post(NEW_PATIENT).json()["Meta"]["Logs"][0]["ID"]
    assert deliveries_of(env, queued) == [destination["id"]]

    # A paused destination gets no new deliveries (what happens to queued ones: test_delivery_worker.py).
    dest_url = f"/platform/v1/destinations/{destination['id']}"
    paused = env.client.patch(dest_url, json={"enabled": False}, headers=admin(env))
    assert paused.status_code == 200 and paused.json()["enabled"] is False
    assert deliveries_of(env, env.post(NEW_PATIENT).json()["Meta"]["Logs"][0]["ID"]) == []
    assert env.client.patch(dest_url, json={"enabled": True}, headers=admin(env)).json()["enabled"] is True
    with env.db.session() as session:
        actions = session.scalars(sa.select(AuditEvent.action).where(AuditEvent.action.like("%:update"))).all()
    assert sorted(actions) == ["destination:update"] * 2 + ["subscription:update"] * 2

    assert env.client.patch(url, json={}, headers=admin(env)).status_code == 400
    assert env.client.patch(url + "x", json={"enabled": False}, headers=admin(env)).status_code == 404
    viewer = role_headers(env, EnvRole.VIEWER)
    assert env.client.patch(dest_url, json={"enabled": False}, headers=viewer).status_code == 403
