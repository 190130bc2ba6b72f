"""FHIR destinations with OAuth client credentials, against a loopback peer that is both the token endpoint and the
FHIR server and checks the client authentication itself (HTTP Basic, form fields, a private_key_jwt assertion
verified with joserfc against the public key)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from healthway.delivery.senders import Message, Target
from healthway.delivery.senders.fhir import DestinationUnavailable, FhirSender
from healthway.domain.actors import CLI
from healthway.domain.delivery_states import AttemptOutcome
from healthway.domain.outbound import OutboundPolicy
from healthway.domain.retry import AttemptResult
from healthway.errors import InvalidRequest
from healthway.services import destinations
from healthway.storage.db import Database
from healthway.testing import FakeMonotonic, loopback_guard, make_key_pair
from tests.factories import make_destination, make_org, make_subscription
from tests.integration.test_intake import FIXTURES, Env, make_env

CLIENT_ID = "healthway-backend"
SECRET = "cs-9f3b1e-do-not-leak"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FHIR_JSON = "application/fhir+json"
PATIENT = (FIXTURES / "fhir/patient.json").read_bytes()
RESOURCE = Message("delivery-1", "log-1", "source-1", FHIR_JSON, b'{"resourceType": "Patient", "id": "p1"}')


def _json(body: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(body), status, content_type="application/json")


@dataclass
class Peer:
    """Token endpoint (``/token``) and FHIR server (``/fhir/...``) on one loopback server. ``problems`` lists every
    check a token request failed; a failed check answers ``invalid_client`` as a real server would."""

    server: HTTPServer
    method: str = "client_secret_basic"
    public_key: RSAKey | ECKey | OKPKey | None = None
    alg: str = "RS384"
    expires_in: Any = 3600
    refuse: bool = False
    token_forms: list[dict[str, str]] = field(default_factory=list)
    valid: set[str] = field(default_factory=set)
    jtis: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fhir_seen: list[str] = field(default_factory=list)  # the Authorization header of each FHIR request

    def __post_init__(self) -> None:
        self.server.expect_request("/token", method="POST").respond_with_handler(self._token)
        self.server.expect_request(re.compile(r"^/fhir/.*")).respond_with_handler(self._fhir)

    @property
    def token_url(self) -> str:
        return self.server.url_for("/token")

    def config(self, **extra: Any) -> dict[str, Any]:
        return {"url": self.server.url_for("/fhir"), "token_url": self.token_url, "client_id": CLIENT_ID, **extra}

    def _token(self, request: Request) -> Response:
        form = request.form.to_dict()
        self.token_forms.append(form)
        if form.get("grant_type") != "client_credentials":
            self.problems.append(f"grant_type {form.get('grant_type')}")
        if self.refuse or not self._authenticated(request, form):
            return _json({"error": "invalid_client", "error_description": "unknown client"}, 401)
        token = secrets.token_urlsafe(16)
        self.valid.add(token)
        return _json({"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}, 200)

    def _authenticated(self, request: Request, form: dict[str, str]) -> bool:
        if self.method == "client_secret_basic":
            basic = request.headers.get("Authorization", "")
            expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
            ok = basic == expected and "client_secret" not in form
        elif self.method == "client_secret_post":
            ok = "Authorization" not in request.headers and (form.get("client_id"), form.get("client_secret")) == (
                CLIENT_ID,
                SECRET,
            )
        else:
            ok = self._assertion_ok(form)
        if not ok:
            self.problems.append(f"{self.method} client authentication failed")
        return ok

    def _assertion_ok(self, form: dict[str, str]) -> bool:
        if form.get("client_assertion_type") != JWT_BEARER or "client_secret" in form:
            return False
        assert self.public_key is not None, "a private_key_jwt peer is given the client's public key"
        try:
            token = jwt.decode(form["client_assertion"], self.public_key, algorithms=[self.alg])
            now = int(time.time())
            jwt.JWTClaimsRegistry(
                now=now,
                leeway=0,
                iss={"essential": True, "value": CLIENT_ID},
                sub={"essential": True, "value": CLIENT_ID},
                aud={"essential": True, "value": self.token_url},
                exp={"essential": True},
                jti={"essential": True},
            ).validate(token.claims)
        except Exception as exc:  # any failure of the assertion is a refusal, recorded for the test
            self.problems.append(f"assertion: {exc}")
            return False
        if token.claims["exp"] > now + 300 or token.claims["jti"] in self.jtis:
            return False
        self.jtis.append(token.claims["jti"])
        return True

    def _fhir(self, request: Request) -> Response:
        auth = request.headers.get("Authorization", "")
        self.fhir_seen.append(auth)
        if auth.removeprefix("Bearer ") not in self.valid:
            return Response('{"resourceType": "OperationOutcome"}', 401, content_type=FHIR_JSON)
        if request.method == "GET":
            return Response(PATIENT, 200, content_type=FHIR_JSON)
        return Response(request.get_data(), 201, content_type=FHIR_JSON)


def send_all(sender: FhirSender, targets: list[Target], message: Message = RESOURCE) -> list[AttemptResult]:
    async def go() -> list[AttemptResult]:
        try:
            return list(await asyncio.gather(*(sender.send(t, message) for t in targets)))
        finally:
            await sender.aclose()

    return asyncio.run(go())


def outcomes(results: list[AttemptResult]) -> list[tuple[AttemptOutcome, str | None]]:
    return [(r.outcome, r.response_code) for r in results]


# -- client authentication at the token endpoint, and the token cache -------------------------------------------------


def test_client_secret_basic_one_token_shared_by_concurrent_sends(httpserver: HTTPServer) -> None:
    peer = Peer(httpserver)
    target = Target("dest-1", "fhir", peer.config(client_secret=SECRET, scope="system/*.write"))
    results = send_all(FhirSender(guard=loopback_guard()), [target] * 12)
    assert outcomes(results) == [(AttemptOutcome.DELIVERED, "201")] * 12
    assert peer.problems == [] and len(peer.token_forms) == 1
    assert peer.token_forms[0] == {"grant_type": "client_credentials", "scope": "system/*.write"}
    [token] = peer.valid
    assert peer.fhir_seen == [f"Bearer {token}"] * 12


def test_client_secret_post_sends_the_credentials_in_the_form(httpserver: HTTPServer) -> None:
    peer = Peer(httpserver, method="client_secret_post")
    config = peer.config(client_secret=SECRET, token_auth_method="client_secret_post")
    results = send_all(FhirSender(guard=loopback_guard()), [Target("dest-1", "fhir", config)])
    assert outcomes(results) == [(AttemptOutcome.DELIVERED, "201")] and peer.problems == []
    assert peer.token_forms[0]["client_id"] == CLIENT_ID and "scope" not in peer.token_forms[0]


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_private_key_jwt_assertion_verifies_and_is_never_reused(httpserver: HTTPServer, alg: str) -> None:
    pair = make_key_pair(alg)
    public = type(pair.private).import_key(pair.private.as_pem(private=False))
    peer = Peer(httpserver, method="private_key_jwt", public_key=public, alg=alg, expires_in=60)
    pem = pair.private.as_pem(private=True).decode()
    target = Target("dest-1", "fhir", peer.config(private_key=pem, alg=alg, kid="key-1"))
    clock = FakeMonotonic()

    async def go() -> list[AttemptResult]:
        sender = FhirSender(guard=loopback_guard(), clock=clock)
        try:
            first = await sender.send(target, RESOURCE)
            clock.advance(61)  # the token has expired: a second fetch, with a second assertion
            return [first, await sender.send(target, RESOURCE)]
        finally:
            await sender.aclose()

    assert outcomes(asyncio.run(go())) == [(AttemptOutcome.DELIVERED, "201")] * 2
    assert peer.problems == [] and len(peer.jtis) == 2 and peer.jtis[0] != peer.jtis[1]
    header = json.loads(base64.urlsafe_b64decode(peer.token_forms[0]["client_assertion"].split(".")[0] + "=="))
    assert header["alg"] == alg and header["kid"] == "key-1"


def test_token_is_reused_until_shortly_before_it_expires(httpserver: HTTPServer) -> None:
    peer = Peer(httpserver, expires_in="300")  # a string, as some servers send it
    target = Target("dest-1", "fhir", peer.config(client_secret=SECRET))
    clock = FakeMonotonic()

    async def go() -> None:
        sender = FhirSender(guard=loopback_guard(), clock=clock)
        try:
            for step in (0, 200, 69):  # 269 s after the fetch: still cached (refetch 30 s before expiry)
                clock.advance(step)
                assert (await sender.send(target, RESOURCE)).outcome is AttemptOutcome.DELIVERED
            assert len(peer.token_forms) == 1
            clock.advance(2)  # 271 s: inside the last 30 s, so a new token first
            assert (await sender.send(target, RESOURCE)).outcome is AttemptOutcome.DELIVERED
        finally:
            await sender.aclose()

    asyncio.run(go())
    assert len(peer.token_forms) == 2 and len(set(peer.fhir_seen)) == 2


def test_a_changed_config_gets_its_own_token(httpserver: HTTPServer) -> None:
    peer = Peer(httpserver)
    before = Target("dest-1", "fhir", peer.config(client_secret=SECRET))
    after = Target("dest-1", "fhir", peer.config(client_secret=SECRET, scope="system/Patient.write"))
    assert (
        outcomes(send_all(FhirSender(guard=loopback_guard()), [before, after]))
        == [(AttemptOutcome.DELIVERED, "201")] * 2
    )
    assert len(peer.token_forms) == 2 and len(set(peer.fhir_seen)) == 2


def test_401_drops_the_token_and_retries_once_with_a_new_one(httpserver: HTTPServer) -> None:
    peer = Peer(httpserver)
    target = Target("dest-1", "fhir", peer.config(client_secret=SECRET))

    async def go() -> list[AttemptResult]:
        sender = FhirSender(guard=loopback_guard())
        try:
            first = await sender.send(target, RESOURCE)
            peer.valid.clear()  # the server revokes every token it gave
            second = await sender.send(target, RESOURCE)
            return [first, second]
        finally:
            await sender.aclose()

    assert outcomes(asyncio.run(go())) == [(AttemptOutcome.DELIVERED, "201")] * 2
    assert len(peer.token_forms) == 2 and len(peer.fhir_seen) == 3
    assert peer.fhir_seen[1] != peer.fhir_seen[2]


def test_a_server_that_keeps_answering_401_gets_exactly_one_retry(httpserver: HTTPServer) -> None:
    peer = Peer(httpserver)
    peer.valid = _NeverValid()
    target = Target("dest-1", "fhir", peer.config(client_secret=SECRET))
    [result] = send_all(FhirSender(guard=loopback_guard()), [target])
    assert (result.outcome, result.response_code, result.detail) == (AttemptOutcome.FAILED, "401", "HTTP 401")
    assert len(peer.token_forms) == 2 and len(peer.fhir_seen) == 2


class _NeverValid(set[str]):
    def __contains__(self, item: object) -> bool:
        return False


# -- failures -------------------------------------------------------------------------------------------------------


def test_refused_credentials_are_a_retry_without_the_secret(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    peer = Peer(httpserver, refuse=True)
    target = Target("dest-1", "fhir", peer.config(client_secret=SECRET))
    results = send_all(FhirSender(guard=loopback_guard()), [target] * 3)
    detail = "the FHIR server's token endpoint refused the client credentials (invalid_client)"
    assert [(r.outcome, r.detail) for r in results] == [(AttemptOutcome.FAILED, detail)] * 3
    assert len(peer.token_forms) == 1  # concurrent sends share the failed fetch too
    assert peer.fhir_seen == []  # the FHIR server never sees a request without a token
    basic = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    assert SECRET not in caplog.text and basic not in caplog.text


def test_unreachable_token_endpoint_is_a_retry(httpserver: HTTPServer) -> None:
    peer = Peer(httpserver)
    config = peer.config(client_secret=SECRET, token_url="http://127.0.0.1:9/token")
    [result] = send_all(FhirSender(guard=loopback_guard()), [Target("dest-1", "fhir", config)])
    assert result.outcome is AttemptOutcome.FAILED
    assert result.detail.startswith("the FHIR server's token endpoint is unreachable")
    assert peer.fhir_seen == []


@pytest.mark.parametrize(
    ("status", "body", "detail"),
    [
        (503, b"busy", "answered HTTP 503 without a token"),
        (200, b'{"token_type": "Bearer"}', "gave no bearer access token"),
        (200, b'{"access_token": "t", "token_type": "DPoP"}', "gave no bearer access token"),
        (400, b'{"error": "invalid scope\\r\\nInjected: yes"}', "refused the client credentials (unreadable error)"),
    ],
)
def test_unusable_token_answers_make_the_destination_unavailable(
    httpserver: HTTPServer, status: int, body: bytes, detail: str
) -> None:
    httpserver.expect_request("/token").respond_with_data(body, status=status, content_type="application/json")
    target = Target("dest-1", "fhir", {"url": httpserver.url_for("/fhir"), "token_url": httpserver.url_for("/token"),
                                       "client_id": CLIENT_ID, "client_secret": SECRET})  # fmt: skip

    async def go() -> None:
        sender = FhirSender(guard=loopback_guard())
        try:
            with pytest.raises(DestinationUnavailable, match=re.escape(detail)) as raised:
                await sender.request(target, method="GET", path="Patient/x")
            assert raised.value.timed_out is False
        finally:
            await sender.aclose()

    asyncio.run(go())


# -- synchronous FHIR queries through the HTTP app -------------------------------------------------------------------


@pytest.fixture
def env(db: Database) -> Iterator[Env]:
    yield from make_env(db, request_timeout=2.0)


def _subscribe_fhir(env: Env, config: dict[str, Any]) -> None:
    with env.db.session() as session:
        destination = make_destination(session, env.world.envs["development"], kind="fhir", name="FHIR", **config)
        make_subscription(session, env.ehr, destination)


def test_fhir_read_through_an_oauth_destination(env: Env, httpserver: HTTPServer) -> None:
    peer = Peer(httpserver, method="client_secret_post")
    _subscribe_fhir(env, peer.config(client_secret=SECRET, token_auth_method="client_secret_post"))
    headers = {"Authorization": f"Bearer {env.ehr_token}"}
    for _ in range(2):
        read = env.client.get("/fhir/R4/Patient/x", headers=headers)
        assert read.status_code == 200 and read.content == PATIENT
    assert peer.problems == [] and len(peer.token_forms) == 1
    assert [seen.startswith("Bearer ") for seen in peer.fhir_seen] == [True, True]


def test_fhir_read_with_refused_credentials_is_502(env: Env, httpserver: HTTPServer) -> None:
    peer = Peer(httpserver, refuse=True)
    _subscribe_fhir(env, peer.config(client_secret=SECRET))
    response = env.client.get("/fhir/R4/Patient/x", headers={"Authorization": f"Bearer {env.ehr_token}"})
    assert response.status_code == 502 and SECRET not in response.text
    assert peer.fhir_seen == []


# -- configuration ----------------------------------------------------------------------------------------------------


def _create(db: Database, **config: Any) -> dict[str, Any]:
    with db.session() as session:
        tag = secrets.token_hex(4)  # a new organization per call
        env = make_org(session, name=f"Org {tag}", email=f"admin-{tag}@example.org").envs["development"]
        destination, secret = destinations.create(
            session, actor=CLI, environment=env, name="FHIR", kind="fhir", config=config, outbound=OutboundPolicy()
        )
        assert secret is None
        return destinations.view(destination, env)


FHIR_URL = {"url": "https://fhir.example.org/r4"}
OAUTH = FHIR_URL | {"token_url": "https://auth.example.org/token", "client_id": CLIENT_ID}


def test_a_client_secret_is_stored_but_never_shown(db: Database) -> None:
    view = _create(db, **OAUTH, client_secret=SECRET, scope="system/*.read")
    assert view["config"] == {
        **OAUTH,
        "scope": "system/*.read",
        "token_auth_method": "client_secret_basic",
        "has_client_secret": True,
    }
    assert _create(db, **FHIR_URL)["config"] == FHIR_URL  # without OAuth nothing else is stored


def test_a_private_key_is_checked_and_never_shown(db: Database) -> None:
    pem = make_key_pair("ES384").private.as_pem(private=True).decode()
    view = _create(db, **OAUTH, private_key=pem, alg="ES384", kid="k1")
    config = view["config"]
    assert config["has_private_key"] is True and "private_key" not in config and pem not in json.dumps(view)
    assert (config["alg"], config["kid"], config["token_auth_method"]) == ("ES384", "k1", "private_key_jwt")


RSA_PEM = make_key_pair("RS384").private.as_pem(private=True).decode()
P256_PEM = make_key_pair("ES256").private.as_pem(private=True).decode()
BROKEN_PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (FHIR_URL | {"client_secret": SECRET}, "need token_url and client_id"),
        (FHIR_URL | {"private_key": RSA_PEM, "client_id": CLIENT_ID}, "need token_url and client_id"),
        (OAUTH, "exactly one of client_secret or private_key"),
        (OAUTH | {"client_secret": SECRET, "private_key": RSA_PEM}, "exactly one of client_secret or private_key"),
        (OAUTH | {"token_url": "ftp://auth.example.org/token", "client_secret": SECRET}, "token_url must be an http"),
        (OAUTH | {"client_secret": SECRET, "token_auth_method": "private_key_jwt"}, "token_auth_method must be"),
        (OAUTH | {"private_key": RSA_PEM, "alg": "HS256"}, "alg must be RS384 or ES384"),
        (OAUTH | {"private_key": BROKEN_PEM}, "private_key must be an RSA private key in PEM form for RS384"),
        (OAUTH | {"private_key": RSA_PEM, "alg": "ES384"}, "private_key must be an EC P-384 private key"),
        (OAUTH | {"private_key": P256_PEM, "alg": "ES384"}, "private_key must be an EC P-384 private key"),
    ],
)
def test_bad_oauth_configs_are_refused(db: Database, config: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)) as raised:
        _create(db, **config)
    assert "PRIVATE KEY" not in str(raised.value) and SECRET not in str(raised.value)


def test_platform_api_takes_the_oauth_fields(env: Env) -> None:
    headers = {"Authorization": f"Bearer {env.world.admin_token}"}
    body = {"environment": "development", "name": "Epic", "kind": "fhir", **OAUTH, "client_secret": SECRET}
    created = env.client.post("/platform/v1/destinations", json=body | {"token_auth_method": "client_secret_post"},
                              headers=headers)  # fmt: skip
    assert created.status_code == 201, created.text
    shown = env.client.get(f"/platform/v1/destinations/{created.json()['id']}", headers=headers)
    config = shown.json()["config"]
    assert config["has_client_secret"] is True and config["token_auth_method"] == "client_secret_post"
    assert SECRET not in created.text and SECRET not in shown.text
    refused = env.client.post("/platform/v1/destinations", json=body | {"private_key": BROKEN_PEM}, headers=headers)
    assert refused.status_code == 400 and "exactly one of client_secret or private_key" in refused.text
    refused = env.client.post(
        "/platform/v1/destinations", json={**body, "client_secret": None, "private_key": BROKEN_PEM}, headers=headers
    )
    assert refused.status_code == 400 and "private_key must be" in refused.text and "MIIEvQ" not in refused.text
