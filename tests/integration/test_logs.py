"""The message log through the Platform API and its PHI rules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from healthway.domain.actors import CLI
from healthway.domain.permissions import EnvRole
from healthway.services import logs, personal_tokens, users
from healthway.services.paging import EnvironmentScope
from healthway.storage.db import Database
from healthway.storage.models import AuditEvent, Membership
from healthway.testing import CHEAP_PASSWORDS
from tests.factories import make_access_token, make_log, make_org, make_source
from tests.integration.test_intake import NEW_PATIENT, Env, make_env


@pytest.fixture
def env(db: Database) -> Iterator[Env]:
    yield from make_env(db)


def _user_token(env: Env, email: str, environment: str, role: EnvRole | None) -> dict[str, str]:
    with env.db.session() as session:
        user, _ = users.find_or_create(
            session, email=email, password="a long enough passphrase", passwords=CHEAP_PASSWORDS
        )
        session.add(Membership(user_id=user.id, organization_id=env.world.org.id, role="member"))
        session.flush()
        users.assign_env_role(session, user=user, environment=env.world.envs[environment], role=role)
        _, token = personal_tokens.create(session, user=user, name="t")
    return {"Authorization": f"Bearer {token}"}


def _send(env: Env, environment: str) -> str:
    with env.db.session() as session:
        source = make_source(session, env.world.envs[environment], f"src-{environment}")
        token = make_access_token(session, env.world.envs[environment], sources=[source])
    response = env.post(NEW_PATIENT, token=token)
    assert response.status_code == 202
    return str(response.json()["Meta"]["Logs"][0]["ID"])


def test_list_filters_and_pages_newest_first(env: Env) -> None:
    ids = [
        env.post(NEW_PATIENT.replace(b"NewPatient", f"Event{i}".encode())).json()["Meta"]["Logs"][0]["ID"]
        for i in range(5)
    ]
    admin = {"Authorization": f"Bearer {env.world.admin_token}"}
    first = env.client.get("/platform/v1/logs?environment=development&limit=3", headers=admin).json()
    assert [log["id"] for log in first["logs"]] == ids[::-1][:3]
    assert first["next_cursor"]
    second = env.client.get(
        f"/platform/v1/logs?environment=development&limit=3&cursor={first['next_cursor']}", headers=admin
    ).json()
    assert [log["id"] for log in second["logs"]] == ids[::-1][3:] and second["next_cursor"] is None
    only = env.client.get("/platform/v1/logs?event_type=Event2", headers=admin).json()["logs"]
    assert [log["id"] for log in only] == [ids[2]]
    assert "payload" not in only[0] and only[0]["status"] == "received" and only[0]["transport"] == "http"
    counts = env.client.get("/platform/v1/logs/counts?environment=development", headers=admin).json()
    assert counts["counts"]["received"] == 5
    assert env.client.get("/platform/v1/logs?cursor=garbage", headers=admin).status_code == 400
    assert env.client.get("/platform/v1/logs?status=weird", headers=admin).status_code == 400


@pytest.mark.parametrize(
    ("environment", "role", "sees_payload"),
    [
        ("production", EnvRole.ADMIN, True),
        ("production", EnvRole.ANALYST, True),
        ("production", EnvRole.ENGINEER, False),
        ("production", EnvRole.VIEWER, False),
        ("development", EnvRole.VIEWER, True),
        ("staging", EnvRole.ENGINEER, True),
    ],
)
def test_payload_visibility_by_role(env: Env, environment: str, role: EnvRole, sees_payload: bool) -> None:
    log_id = _send(env, environment)
    headers = _user_token(env, "reader@example.org", environment, role)
    view = env.client.get(f"/platform/v1/logs/{log_id}", headers=headers)
    assert view.status_code == 200
    assert ("payload" in view.json()) is sees_payload
    if sees_payload:
        assert view.json()["payload"].encode() == NEW_PATIENT
    with env.db.session() as session:
        views = session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "payload:view", AuditEvent.subject_id == log_id)
        )
    assert views == (1 if sees_payload else 0)


def test_no_role_no_logs_and_other_orgs_see_nothing(env: Env) -> None:
    log_id = _send(env, "production")
    no_role = _user_token(env, "nobody@example.org", "production", None)
    assert env.client.get(f"/platform/v1/logs/{log_id}", headers=no_role).status_code == 403
    assert env.client.get("/platform/v1/logs?environment=production", headers=no_role).status_code == 403
    with env.db.session() as session:
        other = make_org(session, name="Other", email="other@example.org")
    outsider = {"Authorization": f"Bearer {other.admin_token}"}
    assert env.client.get(f"/platform/v1/logs/{log_id}", headers=outsider).status_code == 404
    assert env.client.get("/platform/v1/logs", headers=outsider).json()["logs"] == []
    assert env.client.get("/platform/v1/logs").status_code == 401
    assert CLI.is_operator


def test_message_type_filter_takes_subscription_patterns(db: Database) -> None:
    """``ADT^*`` and ``ADT`` match every ADT event, ``ADT^A01`` one event; LIKE's own wildcards are literal."""
    with db.session() as session:
        world = make_org(session)
        source = make_source(session, world.envs["development"])
        for message_type in ("ADT^A01", "ADT^A08", "ORU^R01", "AD_^A01"):
            make_log(session, source, b"MSH|^~\\&|", message_type=message_type, data_model=None, event_type=None)
        scope = EnvironmentScope(world.org.id, "development")

        def found(pattern: str) -> list[str]:
            filters = logs.LogFilter(message_type=pattern)
            return sorted(
                v["message_type"] for v in logs.list_page(session, actor=CLI, scope=scope, filters=filters).items
            )

        assert found("ADT^*") == found("ADT") == found("adt^*") == ["ADT^A01", "ADT^A08"]
        assert found("ADT^A01") == ["ADT^A01"]
        assert found("*^A01") == ["ADT^A01", "AD_^A01"]
        assert found("AD_^*") == ["AD_^A01"]  # the underscore is a character, not LIKE's any-one
        assert found("*") == ["ADT^A01", "ADT^A08", "AD_^A01", "ORU^R01"]
