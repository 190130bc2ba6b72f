"""Health, readiness, metrics, OpenAPI and the JSON error contract, through the ASGI app."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import structlog
from fastapi.testclient import TestClient

from healthway import logconfig
from healthway.app import build
from healthway.errors import PermissionDenied
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.testing import http_app
from tests.factories import make_org


@dataclass
class FakeListener:
    name: str
    up: bool = True
    started: bool = False
    stopped: bool = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def is_up(self) -> bool:
        return self.up


@pytest.fixture
def listener() -> FakeListener:
    return FakeListener("mllp")


@pytest.fixture
def client(db: Database, listener: FakeListener) -> Iterator[TestClient]:
    hw = build(Settings(_env_file=None), db=db, listeners=[listener])
    app = http_app(hw)

    @app.get("/test/boom")
    def boom() -> None:
        raise RuntimeError("secret-ish internals: hwsk_abc")

    @app.get("/test/forbidden")
    def forbidden() -> None:
        raise PermissionDenied("missing permission keys:write")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_the_test_app_runs_the_node_parts(db: Database, listener: FakeListener) -> None:
    with TestClient(http_app(build(Settings(_env_file=None), db=db, listeners=[listener]))):
        assert listener.started and not listener.stopped
    assert listener.stopped


def test_healthz_and_readyz(client: TestClient, listener: FakeListener) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["database"] is True and checks["mllp"] is True
    assert set(checks) >= {"group_commit", "delivery", "sync_requests"} and all(checks.values())
    listener.up = False
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["checks"]["mllp"] is False


def test_readyz_fails_when_the_database_is_gone(tmp_path: object) -> None:
    db = Database("postgresql://postgres@127.0.0.1:1/none")
    with TestClient(http_app(build(Settings(_env_file=None), db=db))) as client:
        response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["database"] is False


def test_errors_are_json(client: TestClient) -> None:
    not_found = client.get("/no/such/path")
    assert not_found.status_code == 404
    assert not_found.json() == {"error": {"code": "not_found", "message": "Not Found"}}
    wrong_method = client.delete("/healthz")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    forbidden = client.get("/test/forbidden")
    assert forbidden.status_code == 403
    assert forbidden.json() == {"error": {"code": "forbidden", "message": "missing permission keys:write"}}


def test_500_has_no_traceback_or_internals(client: TestClient) -> None:
    response = client.get("/test/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["error"]["code"] == "internal_error" and body["error"]["message"] == "internal server error"
    assert len(body["error"]["request_id"]) == 32  # to find the traceback in the server log
    assert "Traceback" not in response.text and "hwsk_" not in response.text and "RuntimeError" not in response.text


def test_metrics_count_requests_per_route_template(client: TestClient, db: Database) -> None:
    with db.session() as session:
        owner_token = make_org(session).admin_token
    client.get("/healthz")
    client.get("/healthz")
    client.get("/no/such/path")
    text = client.get("/metrics", headers={"Authorization": f"Bearer {owner_token}"}).text
    assert 'healthway_http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in text
    assert 'route="unmatched",status="404"' in text
    assert 'healthway_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/healthz"}' in text


def test_openapi_is_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "Healthway" and spec["openapi"].startswith("3.")


@pytest.fixture
def json_logs() -> Iterator[None]:
    logconfig.configure("info", json=True)
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def test_every_request_line_has_a_request_id(db: Database, json_logs: None, caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(http_app(build(Settings(_env_file=None), db=db))) as client:
        response = client.get("/healthz?token=hwat_shouldnotappear")
    # Records carry the event dict after our processors ran (contextvars merged, secrets scrubbed).
    lines = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    request_line = next(line for line in lines if line["event"] == "request")
    assert request_line["request_id"] == response.headers["x-request-id"]
    assert request_line["route"] == "/healthz" and "path" not in request_line
    assert "hwat_" not in json.dumps(lines)  # path only, never the query string


def test_log_scrubber_redacts_secrets() -> None:
    event = logconfig.redact_secrets(
        None,
        "info",
        {
            "event": "login with hwpat_abcdef and hwsk_XYZ-123",
            "password": "hunter2hunter2",
            "client_assertion": "eyJ...",
            "nested": {"secret": "s", "ok": "hwrt_zzz"},
            "count": 3,
        },
    )
    assert event["event"] == "login with [REDACTED] and [REDACTED]"
    assert event["password"] == event["client_assertion"] == "[REDACTED]"
    assert event["nested"] == {"secret": "[REDACTED]", "ok": "[REDACTED]"}
    assert event["count"] == 3


def test_json_logs_render_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    logconfig.configure("info", json=True)  # inside the test: pytest swaps logging handlers between phases
    try:
        structlog.get_logger("t").info("hello", token="hwat_x")
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert lines[-1]["event"] == "hello" and lines[-1]["token"] == "[REDACTED]"
