"""``POST /v2/auth/token`` through the ASGI app on both databases: the happy path, then every known attack.

Each negative case is separate and asserts the specific refusal (its description), so removing the check it
covers makes it fail even where a later layer would also refuse.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from fastapi.testclient import TestClient
from joserfc import jws
from starlette.requests import Request
from starlette.responses import JSONResponse

from healthway.app import Healthway, build
from healthway.domain import assertions
from healthway.domain.actors import CLI
from healthway.errors import InvalidClient
from healthway.services import access_tokens, jti, oauth_keys
from healthway.services.oauth_keys import KeyMaterial
from healthway.services.token_issuer import IssueRequest, issue_many
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import AuditEvent, Environment, UsedAssertion
from healthway.testing import FakeClock, FakeJwksFetcher, KeyPair, assertion_claims, http_app, make_key_pair
from healthway.transports.http import bearer
from tests.factories import make_org, make_source

PUBLIC_URL = "https://healthway.example.org"
AUD = f"{PUBLIC_URL}/v2/auth/token"
TOKEN = "/v2/auth/token"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def whoami(request: Request) -> JSONResponse:
    """A test-only data endpoint: bearer authentication as /endpoint will do it."""
    hw: Healthway = request.app.state.healthway
    with hw.db.session() as session:
        caller = bearer.authenticate(hw, session, request)
        return JSONResponse({"source": caller.source.id, "scope": caller.grant.scope})


@dataclass
class Harness:
    client: TestClient
    hw: Healthway
    clock: FakeClock
    pair: KeyPair
    client_id: str
    source_id: str
    env_id: str

    def claims(self, **extra: Any) -> dict[str, Any]:
        return assertion_claims(self.client_id, AUD, now=self.clock().timestamp(), **extra)

    def assertion(self, header: dict[str, Any] | None = None, pair: KeyPair | None = None, **claims: Any) -> str:
        values = {k: v for k, v in self.claims(**claims).items() if v is not ...}
        return (pair or self.pair).sign(values, header)

    def form(self, assertion: str, **extra: str) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_assertion_type": assertions.ASSERTION_TYPE,
            "client_assertion": assertion,
            **extra,
        }

    def token(self, assertion: str | None = None, **extra: str) -> httpx2.Response:
        return self.client.post(TOKEN, data=self.form(assertion or self.assertion(), **extra))

    def add_key(self, pair: KeyPair, **kw: Any) -> str:
        with self.hw.db.session() as session:
            env = session.get(Environment, self.env_id)
            assert env is not None
            created = oauth_keys.create(
                session, actor=CLI, environment=env, material=KeyMaterial(jwks=pair.public_jwks, alg=pair.alg), **kw
            )
            return created.key.client_id


def make_app(db: Database, clock: FakeClock, fetcher: Any = None, **overrides: Any) -> tuple[Healthway, TestClient]:
    settings = Settings(_env_file=None, public_url=PUBLIC_URL, allow_private_jwks_urls=True)
    hw = build(settings, db=db, clock=clock, jwks_fetcher=fetcher or FakeJwksFetcher(), **overrides)
    app = http_app(hw)
    app.add_route("/test/whoami", whoami, methods=["GET"])
    return hw, TestClient(app, raise_server_exceptions=False)


def make_harness(
    db: Database, *, alg: str = "RS384", fetcher: Any = None, clock: FakeClock | None = None, **overrides: Any
) -> Iterator[Harness]:
    """``overrides`` go to ``build``."""
    clock = clock or FakeClock(datetime.now(UTC).replace(microsecond=0))
    hw, client = make_app(db, clock, fetcher, **overrides)
    pair = make_key_pair(alg)
    with db.session() as session:
        world = make_org(session)
        env = world.envs["development"]
        source = make_source(session, env)
        material = KeyMaterial(jwks=pair.public_jwks, alg=alg)
        created = oauth_keys.create(
            session, actor=CLI, environment=env, material=material, source_ids=[source.id], name="ehr"
        )
        client_id, source_id, env_id = created.key.client_id, source.id, env.id
    with client:
        yield Harness(client, hw, clock, pair, client_id, source_id, env_id)


def raw_rs384(pair: KeyPair, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An RS384 JWS built by hand, for headers joserfc refuses to produce (so the server must refuse them)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    key = pair.private.raw_value
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA384())
    return f"{signing_input}.{b64(signature)}"


@pytest.fixture
def h(db: Database) -> Iterator[Harness]:
    yield from make_harness(db)


def refused(response: httpx2.Response, status: int, error: str, description: str) -> None:
    """An RFC 6749 error body, no caching, no control characters, nothing echoed."""
    body = response.json()
    assert (response.status_code, body["error"]) == (status, error), body
    assert description in body["error_description"], body
    assert not any(c in body["error_description"] for c in "\r\n\t")
    assert response.headers["cache-control"] == "no-store"
    assert "eyJ" not in response.text  # no part of the assertion comes back


def invalid_client(response: httpx2.Response, description: str) -> None:
    refused(response, 401, "invalid_client", description)


# -- the happy path -------------------------------------------------------------------------------------------


def test_token_is_issued_and_authenticates_data_requests(h: Harness) -> None:
    response = h.token()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300 and body["scope"] == "system/*.*"
    assert body["access_token"].startswith("hwat_") and len(body["access_token"]) >= 5 + 43
    assert response.headers["cache-control"] == "no-store"
    who = h.client.get("/test/whoami", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert who.status_code == 200 and who.json() == {"source": h.source_id, "scope": "system/*.*"}


@pytest.mark.parametrize("alg", ["ES384", "RS256", "ES256", "PS384", "EdDSA"])
def test_other_pinned_algorithms_work(db: Database, alg: str) -> None:
    for harness in make_harness(db, alg=alg):
        assert harness.token().status_code == 200


def test_form_client_id_may_be_sent_when_it_matches(h: Harness) -> None:
    assert h.token(client_id=h.client_id).status_code == 200


def test_iat_and_nbf_8_seconds_ahead_pass(h: Harness) -> None:
    now = h.clock().timestamp()
    assert h.token(h.assertion(iat=int(now + 8), nbf=int(now + 8))).status_code == 200


def test_same_jti_for_a_different_client_passes(h: Harness) -> None:
    other = make_key_pair("RS384")
    other_id = h.add_key(other)
    assert h.token(h.assertion(jti="shared")).status_code == 200
    claims = assertion_claims(other_id, AUD, now=h.clock().timestamp(), jti="shared")
    assert h.token(other.sign(claims)).status_code == 200


def test_requested_scopes_are_granted_within_the_keys_allowed_set(h: Harness) -> None:
    assert h.token(scope="system/Patient.rs system/*.read").json()["scope"] == "system/Patient.rs system/*.read"


def test_last_used_time_is_recorded(h: Harness) -> None:
    h.token()
    with h.hw.db.session() as session:
        found = oauth_keys.find(session, h.client_id)
        assert found is not None and found[0].last_used_at is not None


def test_jti_store_refuses_replays_until_exp_and_purges_expired_rows(db: Database) -> None:
    now = datetime.now(UTC)
    exp = now + timedelta(seconds=60)
    with db.session() as session:
        assert jti.remember(session, client_id="c1", jti="j", expires_at=exp, verified_at=now)
        assert not jti.remember(session, client_id="c1", jti="j", expires_at=exp, verified_at=now)
        assert jti.remember(session, client_id="c2", jti="j", expires_at=exp, verified_at=now)
        later = now + timedelta(seconds=61)  # the first use has expired: the row may be taken over
        assert jti.remember(
            session, client_id="c1", jti="j", expires_at=later + timedelta(seconds=60), verified_at=later
        )
        assert jti.purge(session, now=later) == 0  # rows are kept for a margin after their exp
        assert jti.purge(session, now=later + jti.RETENTION_MARGIN) == 1  # c2's row; c1's now lives longer
        assert session.scalar(sa.select(sa.func.count()).select_from(UsedAssertion)) == 1


# -- the wire: form only, capped, each parameter once ---------------------------------------------------------


def test_json_body_is_refused(h: Harness) -> None:
    refused(h.client.post(TOKEN, json=h.form(h.assertion())), 400, "invalid_request", "x-www-form-urlencoded")


def test_a_1_mb_assertion_is_refused_before_parsing(h: Harness) -> None:
    refused(h.token("a" * 1_000_000), 400, "invalid_request", "too large")


def test_a_repeated_parameter_is_refused(h: Harness) -> None:
    body = "grant_type=client_credentials&grant_type=client_credentials&client_assertion=x"
    response = h.client.post(TOKEN, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    refused(response, 400, "invalid_request", "repeated")


@pytest.mark.parametrize(
    ("grant", "status", "error"), [("", 400, "invalid_request"), ("password", 400, "unsupported_grant_type")]
)
def test_grant_type_must_be_client_credentials(h: Harness, grant: str, status: int, error: str) -> None:
    refused(h.client.post(TOKEN, data={**h.form(h.assertion()), "grant_type": grant}), status, error, "grant_type")


def test_client_assertion_type_must_be_exact(h: Harness) -> None:
    form = {**h.form(h.assertion()), "client_assertion_type": assertions.ASSERTION_TYPE + "x"}
    invalid_client(h.client.post(TOKEN, data=form), "client_assertion_type")


def test_missing_assertion_is_invalid_request(h: Harness) -> None:
    form = {k: v for k, v in h.form("").items() if k != "client_assertion"}
    refused(h.client.post(TOKEN, data=form), 400, "invalid_request", "client_assertion")


def test_form_client_id_must_match_the_issuer(h: Harness) -> None:
    invalid_client(h.token(client_id="someone-else"), "client_id does not match")


# -- header attacks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused(h: Harness, alg: str) -> None:
    head = b64(json.dumps({"alg": alg, "kid": h.pair.kid, "typ": "JWT"}).encode())
    body = b64(json.dumps(h.claims()).encode())
    invalid_client(h.token(f"{head}.{body}.{b64(b'x')}"), "alg")


def test_stripped_signature_is_refused(h: Harness) -> None:
    head, body, _ = h.assertion().split(".")
    invalid_client(h.token(f"{head}.{body}."), "no valid signature")


@pytest.mark.parametrize("form", ["pem", "jwk"])
def test_hs384_signed_with_the_public_key_is_refused(h: Harness, form: str) -> None:
    secret = h.pair.private.as_pem(private=False) if form == "pem" else json.dumps(h.pair.public_jwk).encode()
    header = {"alg": "HS384", "kid": h.pair.kid, "typ": "JWT"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(h.claims()).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha384).digest()
    invalid_client(h.token(f"{signing_input}.{b64(signature)}"), "alg")


@pytest.mark.parametrize("alg", ["RS256", "PS384"])
def test_another_rsa_algorithm_than_the_pinned_one_is_refused(h: Harness, alg: str) -> None:
    token = jws.serialize_compact(
        {"alg": alg, "kid": h.pair.kid, "typ": "JWT"}, json.dumps(h.claims()), h.pair.private, algorithms=[alg]
    )
    invalid_client(h.token(token), "alg")


@pytest.fixture
def es(db: Database) -> Iterator[Harness]:
    yield from make_harness(db, alg="ES384")


def test_es384_signature_of_zeros_is_refused(es: Harness) -> None:
    head, body, _ = es.assertion().split(".")
    invalid_client(es.token(f"{head}.{body}.{b64(bytes(96))}"), "signature is invalid")


def test_es384_der_encoded_signature_is_refused(es: Harness) -> None:
    head, body, _ = es.assertion().split(".")
    key = es.pair.private.raw_value
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA384()))
    invalid_client(es.token(f"{head}.{body}.{b64(der)}"), "signature is invalid")


def test_embedded_jwk_header_is_never_used(h: Harness) -> None:
    attacker = make_key_pair("RS384", kid=h.pair.kid)
    token = h.assertion(header={"jwk": attacker.public_jwk}, pair=attacker)
    invalid_client(h.token(token), "signature is invalid")


@pytest.mark.parametrize("header", ["x5u", "x5c"])
def test_x5u_and_x5c_headers_are_never_used(h: Harness, header: str) -> None:
    attacker = make_key_pair("RS384", kid=h.pair.kid)
    value: Any = "https://attacker.example/cert.pem" if header == "x5u" else ["MIIB"]
    invalid_client(h.token(h.assertion(header={header: value}, pair=attacker)), "signature is invalid")


@pytest.mark.parametrize("jku", ["https://attacker.example/jwks.json", "http://127.0.0.1:9/jwks", "file:///etc/passwd"])
def test_jku_other_than_the_registered_url_is_refused(h: Harness, jku: str) -> None:
    header = {"alg": "RS384", "kid": h.pair.kid, "typ": "JWT", "jku": jku}
    invalid_client(h.token(raw_rs384(h.pair, header, h.claims())), "jku")


@pytest.mark.parametrize("kid", ["unknown", "../../../etc/passwd", "' OR '1'='1' --", "k\x00id", "k\nid"])
def test_unknown_or_injected_kid_is_refused(h: Harness, kid: str) -> None:
    invalid_client(h.token(h.assertion(header={"kid": kid})), "kid")


def test_a_10_kb_kid_is_refused(h: Harness) -> None:
    invalid_client(h.token(h.assertion(header={"kid": "k" * 10_000})), "too large")


def test_kid_of_another_client_is_refused(h: Harness) -> None:
    other = make_key_pair("RS384")
    h.add_key(other)
    invalid_client(h.token(h.assertion(header={"kid": other.kid}, pair=other)), "no registered key")


@pytest.mark.parametrize("typ", ["JWS", "at+jwt", "jwt"])
def test_typ_other_than_jwt_is_refused(h: Harness, typ: str) -> None:
    invalid_client(h.token(h.assertion(header={"typ": typ})), "typ")


def test_a_five_part_jwe_is_refused(h: Harness) -> None:
    invalid_client(h.token("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d"), "signed JWT")


def test_malformed_base64_is_refused(h: Harness) -> None:
    head, body, sig = h.assertion().split(".")
    invalid_client(h.token(f"{head}.{body[:-2]}*!.{sig}"), "well-formed")


def test_duplicate_json_members_are_refused_even_when_signed(h: Harness) -> None:
    payload = json.dumps(h.claims())[:-1] + ', "iss": "someone-else"}'
    token = jws.serialize_compact(
        {"alg": "RS384", "kid": h.pair.kid, "typ": "JWT"}, payload, h.pair.private, algorithms=["RS384"]
    )
    invalid_client(h.token(token), "well-formed")


# -- claim attacks --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "description"),
    [
        ({"exp": ...}, "no exp"),
        ({"exp": -1}, "expired"),
        ({"exp": "soon"}, "number"),
        ({"sub": "someone-else"}, "iss and sub"),
        ({"jti": ...}, "jti"),
        ({"aud": "https://elsewhere.example.org/v2/auth/token"}, "aud"),
        ({"aud": AUD + "/"}, "aud"),
        ({"aud": AUD.replace("https://", "http://")}, "aud"),
        ({"aud": [AUD, "https://elsewhere.example.org"]}, "aud"),
    ],
    ids=[
        "exp-missing",
        "exp-past",
        "exp-not-numeric",
        "sub",
        "jti-missing",
        "aud-wrong",
        "aud-slash",
        "aud-http",
        "aud-extra",
    ],
)
def test_bad_claims_are_refused(h: Harness, claims: dict[str, Any], description: str) -> None:
    invalid_client(h.token(h.assertion(**claims)), description)


def test_exp_too_far_ahead_is_refused(h: Harness) -> None:
    invalid_client(h.token(h.assertion(exp=int(h.clock().timestamp()) + 400)), "more than 300")


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_iat_or_nbf_60_seconds_ahead_is_refused(h: Harness, claim: str) -> None:
    ahead: dict[str, Any] = {claim: int(h.clock().timestamp()) + 60}
    invalid_client(h.token(h.assertion(**ahead)), claim)


def test_unknown_client_is_refused(h: Harness) -> None:
    stranger = make_key_pair("RS384")
    claims = assertion_claims("0f0f0f0f-0000-4000-8000-000000000000", AUD, now=h.clock().timestamp())
    invalid_client(h.token(stranger.sign(claims)), "unknown client")


def test_spoofed_host_header_does_not_change_the_audience(h: Harness) -> None:
    token = h.assertion(aud="http://evil.example/v2/auth/token")
    response = h.client.post(TOKEN, data=h.form(token), headers={"Host": "evil.example"})
    invalid_client(response, "aud")


def test_reused_jti_is_refused(h: Harness) -> None:
    token = h.assertion()
    assert h.token(token).status_code == 200
    invalid_client(h.token(token), "already used")


def test_reused_jti_is_refused_after_a_restart(db: Database, h: Harness) -> None:
    token = h.assertion()
    assert h.token(token).status_code == 200
    _, restarted = make_app(db, h.clock)  # a new app (empty caches, no memory) on the same database
    with restarted:
        invalid_client(restarted.post(TOKEN, data=h.form(token)), "already used")


def test_deleted_key_stops_issuing_and_its_tokens_stop_working(h: Harness) -> None:
    access = h.token().json()["access_token"]
    with h.hw.db.session() as session:
        found = oauth_keys.find(session, h.client_id)
        assert found is not None
        oauth_keys.delete(session, actor=CLI, key=found[0], environment=found[1])
    invalid_client(h.token(), "unknown client")  # re-checked in the write even while the client is cached
    who = h.client.get("/test/whoami", headers={"Authorization": f"Bearer {access}"})
    assert who.status_code == 401


# -- scopes ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["system/*.rx", "patient/*.read", "openid", "system/*.read  system/*.rs"])
def test_malformed_or_unknown_scope_is_invalid_scope(h: Harness, scope: str) -> None:
    refused(h.token(scope=scope), 400, "invalid_scope", "scope")


def test_scope_the_key_does_not_allow_is_invalid_scope(db: Database, h: Harness) -> None:
    pair = make_key_pair("RS384")
    client_id = h.add_key(pair, allowed_scopes=["system/*.read"])
    token = pair.sign(assertion_claims(client_id, AUD, now=h.clock().timestamp()))
    refused(h.token(token, scope="system/Patient.write"), 400, "invalid_scope", "not allowed")


# -- auditing -------------------------------------------------------------------------------------------------


def test_refusals_are_audited_aggregated_and_never_hold_the_assertion(h: Harness) -> None:
    tokens = [h.assertion(aud="https://wrong.example") for _ in range(20)]
    for token in tokens:
        assert h.token(token).status_code == 401
    with h.hw.db.session() as session:
        events = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "assertion:reject")).all()
        assert len(events) == 1  # one per client and minute, however many refusals
        assert events[0].subject_id == h.client_id and events[0].summary["refusals"] == 1
        assert not any(token.split(".")[1][:20] in json.dumps(e.summary) for e in events for token in tokens)


# -- batching ---------------------------------------------------------------------------------------------------


def test_one_batch_issues_refuses_replays_and_deleted_keys(h: Harness) -> None:
    with h.hw.db.session() as session:
        key_id = oauth_keys.find(session, h.client_id)[0].id  # type: ignore[index]
    exp = h.clock().timestamp() + 60

    def request(jti_: str, key: str = key_id) -> IssueRequest:
        return IssueRequest(key, h.client_id, h.env_id, jti_, exp, "system/*.*", touch_last_used=True)

    batch = [request("a"), request("b"), request("a"), request("c", key="gone-key")]
    with h.hw.db.session() as session:
        outcomes = issue_many(session, batch, now=h.clock(), ttl=timedelta(seconds=300), purge=True)
    assert isinstance(outcomes[0], str) and isinstance(outcomes[1], str)
    assert isinstance(outcomes[2], InvalidClient) and "already used" in outcomes[2].message
    assert isinstance(outcomes[3], InvalidClient) and "unknown client" in outcomes[3].message
    with h.hw.db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(UsedAssertion)) == 2
        assert access_tokens.authenticate(session, outcomes[0], now=h.clock()) is not None


def test_concurrent_replays_of_one_assertion_get_one_token(h: Harness) -> None:
    token = h.assertion()
    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(lambda _: h.token(token).status_code, range(8)))
    assert statuses == [200] + [401] * 7
