"""Issue 14, the HTTP server, storage and observability: body caps, metadata with control characters, private data
files, metrics and access logs. Through the ASGI app (TestClient) on both databases; the socket-level parts
(timeouts, connection limits, proxy headers) are in tests/e2e/test_security_http_e2e.py."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa
import structlog
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest

from healthway import logconfig
from healthway.app import Healthway, build
from healthway.delivery.attempts import RetryPolicy
from healthway.delivery.metrics import DeliveryMetrics
from healthway.delivery.senders import Senders
from healthway.delivery.worker import DeliveryWorker
from healthway.domain.permissions import OrgRole
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import Organization
from healthway.testing import CHEAP_PASSWORDS, FakeClock, RecordingSender, http_app, loopback_guard
from tests.e2e.conftest import free_port
from tests.factories import (
    World,
    make_access_token,
    make_destination,
    make_log,
    make_org,
    make_source,
    make_subscription,
)
from tests.integration.platform_actions import make_member

MIB = 2**20
MARKER = "PAYLOADMARKER7731"  # a payload byte sequence that must never reach a log line


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, allow_loopback_destinations=True, allow_http_destinations=True, **values)  # type: ignore[arg-type]


@pytest.fixture
def json_logs() -> Iterator[None]:
    logconfig.configure("info", json=True)
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every line the server logged as a reader of the log would see it: event dicts, messages and tracebacks
    (the test's own HTTP client logs the URLs it calls: not the server's log)."""
    formatter = logging.Formatter()
    parts = []
    for record in caplog.records:
        if record.name.startswith("httpx"):
            continue
        parts.append(json.dumps(record.msg, default=str) if isinstance(record.msg, dict) else record.getMessage())
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def world(db: Database) -> World:
    with db.session() as session:
        return make_org(session)


@pytest.fixture
def hw(db: Database) -> Healthway:
    return build(settings(), db=db, passwords=CHEAP_PASSWORDS)


@pytest.fixture
def client(hw: Healthway) -> Iterator[TestClient]:
    with TestClient(http_app(hw), raise_server_exceptions=False) as test_client:
        yield test_client


def data_token(db: Database, world: World) -> str:
    with db.session() as session:
        env = world.envs["development"]
        return make_access_token(session, env, sources=[make_source(session, env)])


# -- item 4: management bodies are capped before they are read -----------------------------------------------------


def test_a_declared_oversized_management_body_is_refused_with_413(client: TestClient) -> None:
    headers = {"Content-Length": str(300 * MIB), "Content-Type": "application/json"}
    response = client.post("/platform/v1/tokens", content=b"{}", headers=headers)
    assert response.status_code == 413
    assert response.json() == {
        "error": {"code": "payload_too_large", "message": f"the request body exceeds {MIB} bytes"}
    }
    assert response.headers["connection"] == "close"


def test_a_chunked_management_body_is_counted_and_refused_past_the_limit(client: TestClient) -> None:
    sent = []

    def chunks() -> Iterator[bytes]:
        for _ in range(40):  # 2.5 MiB in all, with no Content-Length
            sent.append(1)
            yield b"x" * (64 * 1024)

    response = client.post("/platform/v1/users", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert "content-length" not in response.request.headers


def test_small_management_bodies_and_large_data_bodies_still_pass(
    client: TestClient, db: Database, world: World
) -> None:
    created = client.post("/platform/v1/tokens", json={"name": "ci"}, headers=auth(world.admin_token))
    assert created.status_code == 201
    body = {"Meta": {"DataModel": "PatientAdmin", "EventType": "Arrival"}, "Blob": "x" * (3 * MIB)}
    sent = client.post("/endpoint", content=orjson.dumps(body), headers=auth(data_token(db, world)))
    assert sent.status_code == 202  # the data endpoints keep HEALTHWAY_MAX_MESSAGE_BYTES (40 MiB by default)


# -- item 19: control characters in metadata, and no payload or parameter in any log line -------------------------


def test_a_nul_in_the_data_model_is_a_400_and_nothing_of_the_payload_is_logged(
    client: TestClient, db: Database, world: World, json_logs: None, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"Meta": {"DataModel": "Patient\x00Admin", "EventType": "Arrival"}, "Patient": {"Name": MARKER}}
    response = client.post("/endpoint", json=body, headers=auth(data_token(db, world)))
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_request",
        "message": "Meta.DataModel must not contain control characters",
    }
    assert MARKER not in log_text(caplog) and "Patient\x00Admin" not in log_text(caplog)


@pytest.mark.parametrize(
    ("meta", "headers", "what"),
    [
        ({"DataModel": "PatientAdmin", "EventType": "Arr\x1bival"}, {}, "Meta.EventType"),
        (
            {"DataModel": "PatientAdmin", "EventType": "Arrival", "Destinations": [{"ID": "d\x00"}]},
            {},
            "Meta.Destinations.ID",
        ),
        ({"DataModel": "PatientAdmin", "EventType": "Arrival"}, {"Idempotency-Key": "k\x01"}, "Idempotency-Key"),
        (
            {"DataModel": "PatientAdmin", "EventType": "Arrival"},
            {"Healthway-Source-Id": "s\x7f"},
            "healthway-source-id",
        ),
    ],
)
def test_control_characters_in_any_metadata_field_are_refused(
    client: TestClient, db: Database, world: World, meta: dict[str, object], headers: dict[str, str], what: str
) -> None:
    response = client.post("/endpoint", json={"Meta": meta}, headers={**auth(data_token(db, world)), **headers})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == f"{what} must not contain control characters"


def test_control_characters_in_a_legacy_api_key_are_refused(client: TestClient) -> None:
    response = client.post("/auth/authenticate", json={"apiKey": "k\x00", "secret": "hwsk_x"})
    assert response.status_code == 400 and "apiKey must not contain control characters" in response.text


def test_a_value_the_database_refuses_is_a_400_not_a_500(
    client: TestClient, world: World, json_logs: None, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"EHR\x00{MARKER}"
    response = client.post(
        "/platform/v1/sources",
        json={"environment": "development", "name": name},
        headers=auth(world.admin_token),
    )
    assert response.status_code in (201, 400)  # SQLite stores a NUL; PostgreSQL refuses it: the caller's input
    assert MARKER not in log_text(caplog)


def test_database_errors_never_carry_statement_parameters(db: Database) -> None:
    insert = sa.insert(Organization).values(id="org-dup", name=MARKER)
    with db.engine.begin() as conn:
        conn.execute(insert)
    with pytest.raises(sa.exc.IntegrityError) as raised, db.engine.begin() as conn:
        conn.execute(insert)
    assert MARKER not in str(raised.value)
    assert "parameters hidden" in str(raised.value)


# -- item 13: the SQLite files are private whatever the umask ------------------------------------------------------


def test_the_data_dir_and_every_sqlite_file_are_created_private(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        db = Database(f"sqlite:///{tmp_path / 'data' / 'healthway.db'}")
        db.migrate()
        with db.session() as session:  # a write, with a connection open: -wal and -shm exist now
            make_org(session)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "data", *(tmp_path / "data").iterdir()]}
        assert db.permission_warnings() == []
        db.dispose()
    finally:
        os.umask(previous)
    assert modes == {"data": 0o700, "healthway.db": 0o600, "healthway.db-wal": 0o600, "healthway.db-shm": 0o600}


def test_readyz_names_data_files_others_can_read(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'data' / 'healthway.db'}")
    db.migrate()
    (tmp_path / "data").chmod(0o755)
    with TestClient(http_app(build(settings(), db=db, passwords=CHEAP_PASSWORDS))) as client:
        ready = client.get("/readyz")
    db.dispose()
    assert ready.status_code == 200  # a warning, not an outage
    assert ready.json()["warnings"] == [f"{tmp_path / 'data'} is readable by others (mode 755); chmod 700 it"]


# -- item 21: metrics are not public and name no tenant; access logs name route templates --------------------------


def test_public_metrics_need_an_organization_owners_token(client: TestClient, db: Database, world: World) -> None:
    with db.session() as session:
        _, member_token = make_member(session, world, "member@northwind.example.org", org_role=OrgRole.ADMIN)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=auth("hwpat_forged")).status_code == 401
    assert client.get("/metrics", headers=auth(member_token)).status_code == 403
    owner = client.get("/metrics", headers=auth(world.admin_token))
    assert owner.status_code == 200 and "healthway_http_requests_total" in owner.text


def test_with_a_metrics_address_metrics_are_served_there_and_not_on_the_public_port(db: Database, world: World) -> None:
    port = free_port()
    hw = build(settings(metrics_address=f"127.0.0.1:{port}"), db=db)
    with TestClient(http_app(hw)) as client:
        client.get("/healthz")
        assert client.get("/metrics", headers=auth(world.admin_token)).status_code == 404
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert client.get("/readyz").json()["checks"]["metrics"] is True
    assert scraped.status_code == 200
    assert 'healthway_http_requests_total{method="GET",route="/healthz",status="200"}' in scraped.text
    with pytest.raises(httpx.TransportError):  # stopped with the server
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_delivery_metrics_name_destination_kinds_never_destination_ids(db: Database) -> None:
    clock, registry, sender = FakeClock(), CollectorRegistry(), RecordingSender()
    with db.session() as session:
        env = make_org(session).envs["development"]
        source = make_source(session, env)
        destination = make_destination(session, env)
        make_subscription(session, source, destination)
        make_log(session, source, received_at=clock())
    worker = DeliveryWorker(
        db=db,
        clock=clock,
        policy=RetryPolicy(max_age=timedelta(hours=1)),
        metrics=DeliveryMetrics(registry),
        senders=Senders({"webhook": sender}),
        guard=loopback_guard(),
    )
    asyncio.run(worker.run_once())
    text = generate_latest(registry).decode()
    assert len(sender.sent) == 1
    assert 'healthway_delivery_attempts_total{kind="webhook",outcome="delivered"} 1.0' in text
    assert destination.id not in text and source.id not in text and env.organization_id not in text


def test_access_log_lines_name_the_route_template_not_the_path(
    client: TestClient, world: World, json_logs: None, caplog: pytest.LogCaptureFixture
) -> None:
    client.put(
        "/platform/v1/users/someone@example.com/roles/development",
        json={"role": "viewer"},
        headers=auth(world.admin_token),
    )
    client.get("/fhir/R4/Patient/pat-5f3a9c")
    client.post("/platform/v1/legacy-keys/6a1f0c2e-legacy/rotate-secret", headers=auth(world.admin_token))
    lines = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "request"]
    assert [line["route"] for line in lines] == [
        "/platform/v1/users/{email}/roles/{environment}",
        "/fhir/R4/{type}/{id}",
        "/platform/v1/legacy-keys/{api_key}/rotate-secret",
    ]
    text = log_text(caplog)
    assert "someone@example.com" not in text and "pat-5f3a9c" not in text and "6a1f0c2e-legacy" not in text
