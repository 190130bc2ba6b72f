"""Synchronous requests: a Query forwarded to its one destination, FHIR reads proxied (real HTTP peers)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from healthway.delivery.requests import DestinationUnavailable, Requester, target_of
from healthway.delivery.senders import Message, Target
from healthway.services import deliveries
from healthway.storage.db import Database
from tests.factories import make_destination, make_log, make_org, make_source, make_subscription

QUERY = Message("d1", "l1", "s1", "application/json", b'{"Meta": {"DataModel": "Scheduling", "EventType": "Query"}}')


def test_query_answers_with_the_destinations_response_or_says_why_not(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/q", method="POST").respond_with_json({"Slots": [1, 2]})

    def slow(_request: Request) -> Response:
        time.sleep(1)
        return Response("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)

    async def go() -> None:
        requester = Requester(timeout=0.3)
        try:
            answer = await requester.query(Target("w", "webhook", {"url": httpserver.url_for("/q")}), QUERY)
            assert answer.status_code == 200 and json.loads(answer.body) == {"Slots": [1, 2]}
            fhir = Target("f", "fhir", {"url": httpserver.url_for("/r4")})
            httpserver.expect_request("/r4/Patient/42").respond_with_json({"resourceType": "Patient", "id": "42"})
            patient = await requester.fhir(fhir, method="GET", path="Patient/42")
            assert json.loads(patient.body)["id"] == "42"
            # The test server answers one request at a time: the slow one goes last.
            with pytest.raises(DestinationUnavailable) as late:
                await requester.query(Target("w", "webhook", {"url": httpserver.url_for("/slow")}), QUERY)
            assert late.value.timed_out  # → 504
            with pytest.raises(DestinationUnavailable) as down:
                await requester.query(Target("w", "webhook", {"url": "http://127.0.0.1:9/q"}), QUERY)
            assert not down.value.timed_out  # → 502
        finally:
            await requester.aclose()

    asyncio.run(go())
    assert httpserver.log[0][0].headers["webhook-id"] == "d1"


def test_the_query_destination_and_the_fhir_destination_are_found_by_subscription(db: Database) -> None:
    with db.session() as session:
        world = make_org(session)
        env = world.envs["development"]
        source = make_source(session, env)
        scheduler = make_destination(session, env, name="Scheduler")
        other = make_destination(session, env, name="Other")
        fhir = make_destination(session, env, kind="fhir", name="FHIR", url="https://fhir.example.org/r4")
        make_subscription(session, source, scheduler, data_models=["Scheduling"])
        make_subscription(session, source, other, data_models=["Results"])
        make_subscription(session, source, fhir, data_models=["none"])
        log = make_log(session, source, QUERY.payload, data_model="Scheduling", event_type="Query")
        assert [d.id for d in deliveries.query_destinations(session, log=log)] == [scheduler.id]
        found = deliveries.fhir_destination(session, source_id=source.id)
        assert found is not None and target_of(found).config["url"] == "https://fhir.example.org/r4"
