"""Synchronous requests: Data Model queries and the FHIR proxy, against real HTTP servers on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from healthway.storage.db import Database
from healthway.storage.models import Attempt, Delivery, Log
from tests.factories import make_destination, make_subscription
from tests.integration.test_intake import FIXTURES, Env, make_env

QUERY = (FIXTURES / "datamodel/patientsearch_query.json").read_bytes()
PATIENT = (FIXTURES / "fhir/patient.json").read_bytes()


@pytest.fixture
def env(db: Database) -> Iterator[Env]:
    yield from make_env(db, request_timeout=1.0)


def _subscribe(env: Env, kind: str, url: str, **filters: Any) -> str:
    with env.db.session() as session:
        destination = make_destination(session, env.world.envs["development"], kind=kind, name=kind, url=url)
        make_subscription(session, env.ehr, destination, **filters)
        return destination.id


def _logged(env: Env) -> tuple[Log, Delivery, Attempt]:
    with env.db.session() as session:
        log = session.scalars(sa.select(Log)).one()
        delivery = session.scalars(sa.select(Delivery)).one()
        attempt = session.scalars(sa.select(Attempt)).one()
        return log, delivery, attempt


def test_query_returns_the_destination_answer_and_is_logged(env: Env, httpserver: HTTPServer) -> None:
    answer = {"Meta": {"DataModel": "PatientSearch", "EventType": "Query"}, "Patients": [{"Identifiers": []}]}
    httpserver.expect_request("/query", method="POST").respond_with_json(answer)
    _subscribe(env, "webhook", httpserver.url_for("/query"), data_models=["PatientSearch"])
    response = env.post(QUERY)
    assert response.status_code == 200 and response.json() == answer
    [(sent, _)] = httpserver.log
    assert json.loads(sent.get_data()) == json.loads(QUERY)
    assert sent.headers["Healthway-Source-Id"] == env.ehr.id and sent.headers["webhook-signature"].startswith("v1,")
    log, delivery, attempt = _logged(env)
    assert (log.data_model, log.event_type, log.payload) == ("PatientSearch", "Query", QUERY)
    assert log.meta is not None and json.loads(log.meta["response"]["body"]) == answer
    assert (delivery.status, attempt.number, attempt.response_code) == ("delivered", 1, "200")


def test_query_whose_destination_fails_is_502(env: Env, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/query").respond_with_data("boom", status=500)
    _subscribe(env, "webhook", httpserver.url_for("/query"))
    response = env.post(QUERY)
    assert response.status_code == 502 and response.json()["error"]["code"] == "bad_gateway"
    _, delivery, attempt = _logged(env)
    assert (delivery.status, attempt.response_code) == ("failed", "500")


def test_query_without_answer_in_time_is_504(env: Env, httpserver: HTTPServer) -> None:
    def slow(_: Request) -> Response:
        time.sleep(2)
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/query").respond_with_handler(slow)
    _subscribe(env, "webhook", httpserver.url_for("/query"))
    started = time.monotonic()
    response = env.post(QUERY)
    assert response.status_code == 504 and response.json()["error"]["code"] == "gateway_timeout"
    assert time.monotonic() - started < 1.9
    _, delivery, attempt = _logged(env)
    assert delivery.status == "failed" and attempt.response_code is None


def test_query_without_a_destination_is_404(env: Env) -> None:
    response = env.post(QUERY)
    assert response.status_code == 404
    assert env.log_count() == 0


def test_query_unreachable_destination_is_502(env: Env) -> None:
    _subscribe(env, "webhook", "http://127.0.0.1:9/closed")
    assert env.post(QUERY).status_code == 502


def test_fhir_read_and_search_are_proxied(env: Env, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Patient/hws-patient-0001", method="GET").respond_with_data(
        PATIENT, content_type="application/fhir+json"
    )
    httpserver.expect_request("/fhir/Patient", query_string="family=Brennan").respond_with_json(
        {"resourceType": "Bundle", "type": "searchset", "total": 0}
    )
    _subscribe(env, "fhir", httpserver.url_for("/fhir"))
    headers = {"Authorization": f"Bearer {env.ehr_token}"}
    read = env.client.get("/fhir/R4/Patient/hws-patient-0001", headers=headers)
    assert read.status_code == 200 and read.content == PATIENT
    search = env.client.get("/fhir/R4/Patient?family=Brennan", headers=headers)
    assert search.status_code == 200 and search.json()["type"] == "searchset"
    with env.db.session() as session:
        events = sorted(str(event) for event in session.scalars(sa.select(Log.event_type)))
    assert events == ["Patient.read", "Patient.search"]


@pytest.mark.parametrize("path", ["/fhir/R4/patient", "/fhir/R4/Patient/has space", "/fhir/R4/Patient/" + "x" * 65])
def test_fhir_proxy_refuses_malformed_paths(env: Env, path: str) -> None:
    response = env.client.get(path, headers={"Authorization": f"Bearer {env.ehr_token}"})
    assert response.status_code in (400, 404)
    assert response.json()["resourceType"] == "OperationOutcome"


def test_fhir_proxy_without_destination_or_token(env: Env) -> None:
    missing = env.client.get("/fhir/R4/Patient/1", headers={"Authorization": f"Bearer {env.ehr_token}"})
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    anonymous = env.client.get("/fhir/R4/Patient/1")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")


def test_fhir_server_down_is_502(env: Env) -> None:
    _subscribe(env, "fhir", "http://127.0.0.1:9/fhir")
    response = env.client.get("/fhir/R4/Patient/1", headers={"Authorization": f"Bearer {env.ehr_token}"})
    assert response.status_code == 502 and response.json()["issue"][0]["code"] == "transient"
