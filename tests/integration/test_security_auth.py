"""Issue 14, API keys and tokens: regression tests through the HTTP interface, on SQLite and PostgreSQL.

Item 3 (a source-limited key never widens), 5 (SMART scopes enforced), 6 (failures counted per claimed client
and address; a valid credential is never refused), 15 (jti replay just before exp), and legacy keys stopping
when the organization turns them off.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import limits
import pytest
from alembic import command
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer
from starlette.types import ASGIApp, Receive, Scope, Send

from healthway.app import build
from healthway.domain.actors import CLI
from healthway.services import legacy_keys, oauth_keys, ratelimit
from healthway.services.oauth_keys import KeyMaterial
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import OAuthKey, Source
from healthway.testing import FakeClock, FakeJwksFetcher, KeyPair, assertion_claims, http_app, make_key_pair
from tests.factories import World, make_destination, make_org, make_source, make_subscription
from tests.integration.test_oauth_token import AUD, PUBLIC_URL, Harness

SEND = b'{"Meta": {"DataModel": "PatientAdmin", "EventType": "NewPatient"}}'
QUERY = b'{"Meta": {"DataModel": "PatientSearch", "EventType": "Query"}}'
FHIR_JSON = "application/fhir+json"
MESSAGE = (
    b'{"resourceType": "Bundle", "type": "message", "entry": ['
    b'{"resource": {"resourceType": "MessageHeader", "eventCoding": {"code": "admit"}}},'
    b'{"resource": {"resourceType": "Patient", "id": "p1"}}]}'
)
X, Y = ("10.0.0.9", 40000), ("10.0.0.10", 40000)


class PeerAddress:
    """Every HTTP request reaches the app from ``address``, as from a socket peer (not a forwarded header)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app, self.address = app, X

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "client": self.address}
        await self.app(scope, receive, send)


@dataclass
class Setup:
    h: Harness
    peer: PeerAddress
    world: World

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.world.admin_token}"}

    def access_token(self, scope: str | None = None) -> str:
        response = self.h.token(**({"scope": scope} if scope else {}))
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def post(self, token: str, body: bytes = SEND, path: str = "/endpoint", **headers: str) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers}
        return self.h.client.post(path, content=body, headers=headers)

    def get(self, token: str, path: str) -> httpx2.Response:
        return self.h.client.get(path, headers={"Authorization": f"Bearer {token}"})

    def legacy_key(self) -> tuple[str, str]:
        with self.h.hw.db.session() as session:
            dev = self.world.envs["development"]
            key, secret = legacy_keys.create(
                session, actor=CLI, source=make_source(session, dev, "LIS"), environment=dev
            )
            return key.api_key, secret


def make_setup(db: Database, clock: FakeClock | None = None, fetcher: Any = None) -> Iterator[Setup]:
    clock = clock or FakeClock(datetime.now(UTC).replace(microsecond=0))
    settings = Settings(
        _env_file=None,
        public_url=PUBLIC_URL,
        allow_loopback_destinations=True,
        allow_http_destinations=True,
    )
    hw = build(settings, db=db, clock=clock, jwks_fetcher=fetcher or FakeJwksFetcher())
    peer = PeerAddress(http_app(hw))
    pair = make_key_pair("RS384")
    with db.session() as session:
        world = make_org(session)
        env = world.envs["development"]
        source = make_source(session, env)
        material = KeyMaterial(jwks=pair.public_jwks, alg="RS384")
        created = oauth_keys.create(session, actor=CLI, environment=env, material=material, source_ids=[source.id])
        client_id, source_id, env_id = created.key.client_id, source.id, env.id
    with TestClient(peer, raise_server_exceptions=False) as client:
        yield Setup(Harness(client, hw, clock, pair, client_id, source_id, env_id), peer, world)


@pytest.fixture
def s(db: Database) -> Iterator[Setup]:
    yield from make_setup(db)


# -- item 3: a key limited to listed sources never becomes environment-wide -------------------------------------


def _assertion(client_id: str, pair: KeyPair, clock: FakeClock) -> str:
    return pair.sign(assertion_claims(client_id, AUD, now=clock().timestamp()))


def test_security_auth_key_limited_to_a_deleted_source_is_disabled(s: Setup) -> None:
    platform = s.h.client
    a, b = (
        platform.post("/platform/v1/sources", json={"environment": "development", "name": n}, headers=s.admin).json()
        for n in ("A", "B")
    )
    pair = make_key_pair("RS384")
    body = {"environment": "development", "sources": [a["id"]], "jwks": pair.public_jwks, "alg": "RS384"}
    key = platform.post("/platform/v1/oauth-keys", json=body, headers=s.admin).json()
    token = s.h.token(_assertion(key["client_id"], pair, s.h.clock)).json()["access_token"]
    assert s.post(token).status_code == 202  # sends as A
    assert s.post(token, **{"Healthway-Source-Id": b["id"]}).status_code == 403

    deleted = platform.delete(f"/platform/v1/sources/{a['id']}?force=true", headers=s.admin)
    assert deleted.status_code == 204

    # Its last source gone, the key covers nothing: its token stops working, it gets no new one.
    assert s.post(token, **{"Healthway-Source-Id": b["id"]}).status_code == 401
    assert s.post(token).status_code == 401
    refused = s.h.token(_assertion(key["client_id"], pair, s.h.clock))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    listed = platform.get("/platform/v1/oauth-keys?environment=development", headers=s.admin).json()
    [view] = [k for k in listed["oauth_keys"] if k["id"] == key["id"]]
    assert (view["sources"], view["all_sources"], view["disabled"]) == ([], False, True)


def test_security_auth_environment_wide_key_still_covers_every_source(s: Setup) -> None:
    pair = make_key_pair("RS384")
    body = {"environment": "development", "jwks": pair.public_jwks, "alg": "RS384"}
    key = s.h.client.post("/platform/v1/oauth-keys", json=body, headers=s.admin).json()
    token = s.h.token(_assertion(key["client_id"], pair, s.h.clock)).json()["access_token"]
    source_header: dict[str, Any] = {"Healthway-Source-Id": s.h.source_id}
    assert s.post(token, **source_header).status_code == 202
    assert key["all_sources"] is True and key["disabled"] is False


# -- item 5: SMART scopes are enforced ----------------------------------------------------------------------------


def _insufficient(response: httpx2.Response, scope: str) -> None:
    assert response.status_code == 403, response.text
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and f'scope="{scope}"' in challenge


def test_security_auth_read_scope_cannot_send(s: Setup) -> None:
    token = s.access_token("system/Patient.read")
    response = s.post(token)
    _insufficient(response, "system/Patient.c")
    assert response.json()["error"]["code"] == "insufficient_scope"
    message = s.post(token, MESSAGE, "/fhir/R4/$process-message", **{"Content-Type": FHIR_JSON})
    _insufficient(message, "system/Patient.c")
    assert message.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("scope", ["system/*.write", "system/Patient.c", "system/*.*", "system/Patient.cruds"])
def test_security_auth_create_scopes_can_send(s: Setup, scope: str) -> None:
    token = s.access_token(scope)
    assert s.post(token).status_code == 202
    assert s.post(token, MESSAGE, "/fhir/R4/$process-message", **{"Content-Type": FHIR_JSON}).status_code == 202


def test_security_auth_scope_of_another_resource_cannot_send(s: Setup) -> None:
    token = s.access_token("system/Patient.c")
    scheduling = b'{"Meta": {"DataModel": "Scheduling", "EventType": "New"}}'
    _insufficient(s.post(token, scheduling), "system/Appointment.c")
    unknown = b'{"Meta": {"DataModel": "Homegrown", "EventType": "New"}}'  # not in the table: wildcard only
    _insufficient(s.post(token, unknown), "system/*.c")
    assert s.post(s.access_token("system/*.c"), unknown).status_code == 202


def test_security_auth_write_scope_cannot_read_fhir_or_query(s: Setup) -> None:
    token = s.access_token("system/*.write")
    read = s.get(token, "/fhir/R4/Patient/p1")
    _insufficient(read, "system/Patient.r")
    assert read.json()["resourceType"] == "OperationOutcome"
    _insufficient(s.get(token, "/fhir/R4/Patient?family=Brennan"), "system/Patient.s")
    query = s.post(token, QUERY)
    _insufficient(query, "system/Patient.rs")
    assert query.json()["error"]["code"] == "insufficient_scope"


def test_security_auth_v2_read_scope_reads_fhir_and_queries(s: Setup, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Patient/p1").respond_with_json({"resourceType": "Patient", "id": "p1"})
    with s.h.hw.db.session() as session:
        destination = make_destination(
            session, s.world.envs["development"], kind="fhir", name="fhir", url=httpserver.url_for("/fhir")
        )
        source = session.get(Source, s.h.source_id)
        assert source is not None
        make_subscription(session, source, destination)
    token = s.access_token("system/Patient.rs")
    read = s.get(token, "/fhir/R4/Patient/p1")
    assert read.status_code == 200 and read.json()["id"] == "p1"
    assert s.post(token, QUERY).status_code == 404  # allowed; no webhook destination answers queries here
    _insufficient(s.get(token, "/fhir/R4/Observation/o1"), "system/Observation.r")
    _insufficient(s.post(token), "system/Patient.c")


# -- item 6: failures are counted per (claimed client, address); valid credentials are never refused --------------


@pytest.fixture
def strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "FAILURES_PER_KEY", limits.parse("3/minute"))


@pytest.mark.usefixtures("strict")
def test_security_auth_bad_assertions_do_not_lock_out_the_client(s: Setup) -> None:
    stranger = make_key_pair("RS384")
    s.peer.address = X
    for _ in range(3):
        assert s.h.token(s.h.assertion(pair=stranger)).status_code == 401
    throttled = s.h.token(s.h.assertion(pair=stranger))
    assert throttled.status_code == 429 and throttled.json()["error"] == "rate_limited"
    s.peer.address = Y
    assert s.h.token().status_code == 200  # the real client, elsewhere
    assert s.h.token(s.h.assertion(pair=stranger)).status_code == 401  # Y has its own count
    s.peer.address = X
    assert s.h.token().status_code == 200  # a valid assertion is never refused, even from X


@pytest.mark.usefixtures("strict")
def test_security_auth_wrong_legacy_secrets_do_not_lock_out_the_key(s: Setup) -> None:
    api_key, secret = s.legacy_key()

    def authenticate(secret_: str) -> int:
        return s.h.client.post("/auth/authenticate", json={"apiKey": api_key, "secret": secret_}).status_code

    s.peer.address = X
    assert [authenticate("hwsk_wrong") for _ in range(4)] == [401, 401, 401, 429]
    s.peer.address = Y
    assert authenticate(secret) == 200
    s.peer.address = X
    assert authenticate(secret) == 200


# -- item 15: a jti is judged at verification time --------------------------------------------------------------


@dataclass
class SteppingClock(FakeClock):
    """Moves ``step`` seconds forward at every read: time passes between checking and writing."""

    step: float = 0.0

    def __call__(self) -> datetime:
        now = self.now
        self.now += timedelta(seconds=self.step)
        return now


@pytest.fixture
def stepping(db: Database) -> Iterator[tuple[Setup, SteppingClock]]:
    clock = SteppingClock(datetime.now(UTC).replace(microsecond=0))
    for setup in make_setup(db, clock=clock):
        yield setup, clock


def _exp(assertion: str) -> float:
    payload = assertion.split(".")[1]
    return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])


def test_security_auth_assertion_replayed_just_before_exp_is_refused(stepping: tuple[Setup, SteppingClock]) -> None:
    (_, clock), h = stepping, stepping[0].h
    assertion = h.assertion()
    assert h.token(assertion).status_code == 200
    # Verified 1 ms before its exp; the batch holding the replay is written 1 ms after it.
    clock.now, clock.step = datetime.fromtimestamp(_exp(assertion), UTC) - timedelta(milliseconds=1), 0.002
    replay = h.token(assertion)
    assert replay.status_code == 401 and "already used" in replay.json()["error_description"]


# -- legacy keys turned off -------------------------------------------------------------------------------------


def test_security_auth_legacy_keys_off_stops_existing_keys_and_tokens(s: Setup) -> None:
    api_key, secret = s.legacy_key()
    pair = s.h.client.post("/auth/authenticate", json={"apiKey": api_key, "secret": secret}).json()
    assert s.post(pair["accessToken"]).status_code == 202
    org = f"/platform/v1/organizations/{s.world.org.id}"
    assert s.h.client.patch(org, json={"allow_legacy_keys": False}, headers=s.admin).status_code == 200

    for path, body in [
        ("/auth/authenticate", {"apiKey": api_key, "secret": secret}),
        ("/auth/refreshToken", {"apiKey": api_key, "refreshToken": pair["refreshToken"]}),
    ]:
        refused = s.h.client.post(path, json=body)
        assert refused.status_code == 401 and refused.headers["deprecation"] == "true"
        assert refused.json()["error"]["code"] == "legacy_keys_disabled"
        assert "legacy API keys are turned off for this organization" in refused.json()["error"]["message"]
    sent = s.post(pair["accessToken"])
    assert sent.status_code == 401 and sent.headers["deprecation"] == "true"
    assert "turned off" in sent.json()["error"]["message"]
    assert 'error="invalid_token"' in sent.headers["www-authenticate"]
    wrong = s.h.client.post("/auth/authenticate", json={"apiKey": api_key, "secret": "hwsk_wrong"})
    assert wrong.json()["error"]["code"] == "unauthenticated"  # the setting is told only to who holds the secret

    assert s.h.client.patch(org, json={"allow_legacy_keys": True}, headers=s.admin).status_code == 200
    assert s.post(pair["accessToken"]).status_code == 202  # turned back on: the token was not revoked


# -- item 3: the migration ------------------------------------------------------------------------------------------


def test_security_auth_migration_states_all_sources_explicitly(tmp_path: Path) -> None:
    """Keys without listed sources were environment-wide: the migration marks them so; limited keys stay limited."""
    db = Database(f"sqlite:///{tmp_path / 'healthway.db'}")
    db.migrate()
    with db.session() as session:
        world = make_org(session)
        env = world.envs["development"]
        source = make_source(session, env)
        jwks = KeyMaterial(jwks=make_key_pair("ES384").public_jwks)
        wide = oauth_keys.create(session, actor=CLI, environment=env, material=jwks).key.id
        limited = oauth_keys.create(session, actor=CLI, environment=env, material=jwks, source_ids=[source.id]).key.id
    config = db._alembic_config()
    command.downgrade(config, "0003a-1")  # the schema before: "all sources" read from an empty list
    command.upgrade(config, "head")
    with db.session() as session:
        assert session.get(OAuthKey, wide).all_sources is True  # type: ignore[union-attr]
        assert session.get(OAuthKey, limited).all_sources is False  # type: ignore[union-attr]
    db.dispose()
