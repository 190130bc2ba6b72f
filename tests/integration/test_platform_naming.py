"""One naming, one meaning (issue 16): what an answer says, a request accepts; two spellings never disagree."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from healthway.storage.db import Database
from tests.integration.test_delivery_platform import admin, create_destination
from tests.integration.test_intake import NEW_PATIENT, Env, make_env


@pytest.fixture
def env(db: Database) -> Iterator[Env]:
    yield from make_env(db)


def test_a_subscription_answer_sent_back_creates_the_same_subscription(env: Env) -> None:
    hook = create_destination(env, kind="webhook", url="https://partner.example.org/in")
    body = {"source_id": env.ehr.id, "destination_id": hook["id"], "message_types": ["ADT^*"]}
    first = env.client.post("/platform/v1/subscriptions", json=body, headers=admin(env))
    assert first.status_code == 201, first.text
    deleted = env.client.delete(f"/platform/v1/subscriptions/{first.json()['id']}", headers=admin(env))
    assert deleted.status_code == 204
    again = env.client.post("/platform/v1/subscriptions", json=first.json(), headers=admin(env))
    assert again.status_code == 201, again.text
    same = ("source_id", "destination_id", "message_types", "ordering", "environment")
    assert {k: again.json()[k] for k in same} == {k: first.json()[k] for k in same}
    assert again.json()["id"] != first.json()["id"]


def test_the_first_published_spelling_still_works(env: Env) -> None:
    hook = create_destination(env, kind="webhook", url="https://partner.example.org/in")
    old = {"source": env.ehr.id, "destination": hook["id"]}
    created = env.client.post("/platform/v1/subscriptions", json=old, headers=admin(env))
    assert created.status_code == 201, created.text
    assert (created.json()["source_id"], created.json()["destination_id"]) == (env.ehr.id, hook["id"])


def test_the_two_source_headers_naming_different_sources_are_refused(env: Env) -> None:
    both = {"Healthway-Source-Id": env.lis.id, "Redox-Source-Id": env.ehr.id}
    refused = env.post(NEW_PATIENT, token=env.token, **both)
    assert refused.status_code == 400 and env.log_count() == 0
    assert "Healthway-Source-Id and Redox-Source-Id name different sources" in refused.json()["error"]["message"]
    same = env.post(NEW_PATIENT, token=env.token, **{"Healthway-Source-Id": env.lis.id, "Redox-Source-Id": env.lis.id})
    assert same.status_code == 202 and same.json()["Meta"]["Source"]["ID"] == env.lis.id


def test_a_host_name_with_a_space_is_refused(env: Env) -> None:
    body = {"environment": "development", "name": "H", "kind": "webhook", "url": "https://hooks example.org/in"}
    refused = env.client.post("/platform/v1/destinations", json=body, headers=admin(env))
    assert refused.status_code == 400 and "invalid host name" in refused.json()["error"]["message"]
    mllp = {"environment": "development", "name": "M", "kind": "mllp", "host": "lab host", "port": 2575}
    assert env.client.post("/platform/v1/destinations", json=mllp, headers=admin(env)).status_code == 400


def test_a_destination_answer_sent_back_creates_the_same_destination(env: Env) -> None:
    first = create_destination(env, "Lab", kind="mllp", host="lab.example.org", port=2575, tls=True)
    assert env.client.delete(f"/platform/v1/destinations/{first['id']}", headers=admin(env)).status_code == 204
    again = env.client.post("/platform/v1/destinations", json=first, headers=admin(env))
    assert again.status_code == 201, again.text
    assert (again.json()["name"], again.json()["kind"], again.json()["config"]) == (
        "Lab",
        "mllp",
        first["config"],
    )
