"""HTTP intake: POST /endpoint and POST /fhir/R4/$process-message, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from healthway.app import build
from healthway.services.ratelimit import RateLimiter
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import Log, Source
from healthway.testing import http_app, settable_rate_limiter
from tests.factories import World, make_access_token, make_org, make_source

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NEW_PATIENT = (FIXTURES / "datamodel/patientadmin_newpatient.json").read_bytes()
ADMIT_BUNDLE = (FIXTURES / "fhir/message_bundle_admit.json").read_bytes()


@dataclass
class Env:
    client: TestClient
    db: Database
    world: World
    ehr: Source
    lis: Source
    token: str  # covers both sources
    ehr_token: str  # covers only the EHR

    def post(self, body: bytes, *, token: str | None = None, path: str = "/endpoint", **headers: str) -> Any:
        headers = {"Authorization": f"Bearer {token or self.ehr_token}", "Content-Type": "application/json", **headers}
        return self.client.post(path, content=body, headers=headers)

    def log_count(self) -> int:
        with self.db.session() as session:
            return int(session.scalar(sa.select(sa.func.count()).select_from(Log)) or 0)


def make_env(db: Database, *, rate_limiter: RateLimiter | None = None, **settings: Any) -> Iterator[Env]:
    with db.session() as session:
        world = make_org(session)
        dev = world.envs["development"]
        ehr, lis = make_source(session, dev, "EHR"), make_source(session, dev, "LIS")
        token = make_access_token(session, dev)
        ehr_token = make_access_token(session, dev, sources=[ehr])
    # Receivers in these tests listen on 127.0.0.1 over plain HTTP: the operator's opt-ins allow that.
    opt_ins = {"allow_loopback_destinations": True, "allow_http_destinations": True}
    app = http_app(build(Settings(_env_file=None, **(opt_ins | settings)), db=db, rate_limiter=rate_limiter))
    with TestClient(app) as client:
        yield Env(client, db, world, ehr, lis, token, ehr_token)


@pytest.fixture
def env(db: Database) -> Iterator[Env]:
    yield from make_env(db)


def test_send_answers_202_with_meta_and_logs_after_commit(env: Env) -> None:
    response = env.post(NEW_PATIENT)
    assert response.status_code == 202
    meta = response.json()["Meta"]
    assert (meta["DataModel"], meta["EventType"], meta["Test"]) == ("PatientAdmin", "NewPatient", True)
    assert meta["Source"] == {"ID": env.ehr.id, "Name": "EHR"}
    [log_ref] = meta["Logs"]
    # Visible from another connection the moment the 202 arrived: durable before acknowledged.
    with env.db.engine.connect() as other:
        row = other.execute(
            sa.select(Log.payload, Log.data_model, Log.event_type, Log.test, Log.transport, Log.size, Log.status).where(
                Log.id == log_ref["ID"]
            )
        ).one()
    assert row == (NEW_PATIENT, "PatientAdmin", "NewPatient", True, "http", len(NEW_PATIENT), "received")
    assert log_ref["AttemptID"]


def test_fhir_message_is_accepted(env: Env) -> None:
    response = env.post(ADMIT_BUNDLE, path="/fhir/R4/$process-message", **{"Content-Type": "application/fhir+json"})
    assert response.status_code == 202
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["severity"] == "information"
    with env.db.session() as session:
        log = session.get(Log, outcome["id"])
        assert log is not None and (log.data_model, log.event_type) == ("Bundle", "A01")
        assert log.content_type == "application/fhir+json" and log.payload == ADMIT_BUNDLE


@pytest.mark.parametrize(
    "name",
    ["bundle_no_messageheader.json", "not_a_bundle.json"],
)
def test_invalid_fhir_messages_get_operation_outcomes(env: Env, name: str) -> None:
    response = env.post((FIXTURES / "fhir/invalid" / name).read_bytes(), path="/fhir/R4/$process-message")
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["severity"] == "error"
    assert outcome["issue"][0]["diagnostics"]
    assert env.log_count() == 0


def test_fhir_patient_is_not_a_message(env: Env) -> None:
    response = env.post((FIXTURES / "fhir/patient.json").read_bytes(), path="/fhir/R4/$process-message")
    assert response.status_code == 400 and "Bundle" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ((FIXTURES / "datamodel/invalid/not_json.txt").read_bytes(), "not valid JSON"),
        ((FIXTURES / "datamodel/invalid/missing_meta.json").read_bytes(), "Meta"),
        ((FIXTURES / "datamodel/invalid/missing_datamodel.json").read_bytes(), "Meta.DataModel"),
        ((FIXTURES / "datamodel/invalid/wrong_types.json").read_bytes(), "Meta"),
        (b"[1, 2]", "JSON object"),
        (b'{"Meta": {"DataModel": "PatientAdmin", "EventType": ""}}', "Meta.EventType"),
        (b'{"Meta": {"DataModel": "PatientAdmin", "EventType": "NewPatient", "Destinations": "x"}}', "Destinations"),
        (b'{"Meta": {"DataModel": "PatientAdmin", "EventType": "NewPatient", "Test": "yes"}}', "Meta.Test"),
        (b"", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
    ],
)
def test_malformed_bodies_are_400_and_store_nothing(env: Env, body: bytes, needle: str) -> None:
    response = env.post(body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and needle in error["message"]
    assert env.log_count() == 0


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer hwat_unknown", "Basic abc", "Bearer " + "x" * 5000])
def test_unauthenticated_requests_are_401(env: Env, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = env.client.post("/endpoint", content=NEW_PATIENT, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["error"]["code"] == "invalid_token"
    assert env.log_count() == 0


def test_source_selection(env: Env) -> None:
    # A token covering two sources needs the header; either alias works.
    assert env.post(NEW_PATIENT, token=env.token).status_code == 400
    ok = env.post(NEW_PATIENT, token=env.token, **{"Healthway-Source-Id": env.lis.id})
    assert ok.status_code == 202 and ok.json()["Meta"]["Source"]["ID"] == env.lis.id
    alias = env.post(NEW_PATIENT, token=env.token, **{"Redox-Source-Id": env.ehr.id})
    assert alias.status_code == 202 and alias.json()["Meta"]["Source"]["ID"] == env.ehr.id
    # A token limited to the EHR: no header needed, its own source accepted, others refused.
    assert env.post(NEW_PATIENT, **{"Healthway-Source-Id": env.ehr.id}).status_code == 202
    assert env.post(NEW_PATIENT, **{"Healthway-Source-Id": env.lis.id}).status_code == 403
    assert env.post(NEW_PATIENT, **{"Healthway-Source-Id": "00000000-0000-0000-0000-000000000000"}).status_code == 403


def test_a_token_of_another_environment_cannot_name_this_source(env: Env) -> None:
    with env.db.session() as session:
        staging_token = make_access_token(session, env.world.envs["staging"])
    assert env.post(NEW_PATIENT, token=staging_token, **{"Healthway-Source-Id": env.ehr.id}).status_code == 403


def test_idempotency_key(env: Env) -> None:
    first = env.post(NEW_PATIENT, **{"Idempotency-Key": "order-42"})
    again = env.post(NEW_PATIENT, **{"Idempotency-Key": "order-42"})
    assert first.status_code == again.status_code == 202
    assert first.json()["Meta"]["Logs"] == again.json()["Meta"]["Logs"]
    assert env.log_count() == 1
    other_body = env.post(NEW_PATIENT.replace(b"Elinor", b"Eleanor"), **{"Idempotency-Key": "order-42"})
    assert other_body.status_code == 422 and other_body.json()["error"]["code"] == "unprocessable_entity"
    other_source = env.post(
        NEW_PATIENT, token=env.token, **{"Idempotency-Key": "order-42", "Healthway-Source-Id": env.lis.id}
    )
    assert other_source.status_code == 202
    assert other_source.json()["Meta"]["Logs"][0]["ID"] != first.json()["Meta"]["Logs"][0]["ID"]
    assert env.log_count() == 2
    assert env.post(NEW_PATIENT, **{"Idempotency-Key": "k" * 256}).status_code == 400


def test_concurrent_sends_are_all_stored(env: Env) -> None:
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: env.post(NEW_PATIENT), range(64)))
    assert {r.status_code for r in responses} == {202}
    ids = {r.json()["Meta"]["Logs"][0]["ID"] for r in responses}
    assert len(ids) == 64 and env.log_count() == 64


def test_oversized_body_is_413_and_the_server_keeps_serving(db: Database) -> None:
    for env in make_env(db, max_message_bytes=2048):
        big = json.dumps({"Meta": {"DataModel": "PatientAdmin", "EventType": "NewPatient"}, "x": "a" * 4096})
        response = env.post(big.encode())
        assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
        chunked = env.client.post(
            "/endpoint",
            content=iter([big.encode()[:1500], big.encode()[1500:]]),
            headers={"Authorization": f"Bearer {env.ehr_token}"},
        )
        assert chunked.status_code == 413
        small = b'{"Meta": {"DataModel": "PatientAdmin", "EventType": "NewPatient"}}'
        assert env.post(small).status_code == 202
        assert env.log_count() == 1


def test_rate_limit_per_source_then_recovery(db: Database) -> None:
    limiter, clock = settable_rate_limiter()
    for env in make_env(db, rate_limiter=limiter, rate_limit_per_source="3/5 seconds"):
        statuses = [env.post(NEW_PATIENT).status_code for _ in range(4)]
        assert statuses == [202, 202, 202, 429]
        limited = env.post(NEW_PATIENT)
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.headers["x-ratelimit-limit"] == "3" and limited.headers["x-ratelimit-remaining"] == "0"
        assert int(limited.headers["x-ratelimit-reset"]) >= int(time.time())
        # Another source is not affected.
        assert env.post(NEW_PATIENT, token=env.token, **{"Healthway-Source-Id": env.lis.id}).status_code == 202
        clock.advance(int(limited.headers["retry-after"]) - 1)
        assert env.post(NEW_PATIENT).status_code == 429  # not a second early
        clock.advance(1)
        assert env.post(NEW_PATIENT).status_code == 202


def test_rate_limit_per_address(db: Database) -> None:
    for env in make_env(db, rate_limit_per_address="2/minute"):
        assert [env.post(NEW_PATIENT).status_code for _ in range(3)] == [202, 202, 429]
