"""OAuth keys registered by JWKS URL: a real HTTP server (pytest-httpserver), caching, rotation, SSRF guard."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import orjson
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from healthway.domain.actors import CLI
from healthway.errors import InvalidRequest
from healthway.services import oauth_keys
from healthway.services.jwks_fetcher import HttpJwksFetcher, address_allowed, cache_seconds
from healthway.services.oauth_keys import KeyMaterial
from healthway.storage.db import Database
from healthway.storage.models import Environment
from healthway.testing import FakeMonotonic, KeyPair, assertion_claims, make_key_pair
from tests.integration.test_oauth_token import AUD, Harness, invalid_client, make_harness

JWKS_PATH = "/jwks.json"


class UrlClient:
    """A key registered by URL, and the server publishing its set."""

    def __init__(self, h: Harness, server: HTTPServer, url: str) -> None:
        self.h, self.server, self.url = h, server, url
        with h.hw.db.session() as session:
            env = session.get(Environment, h.env_id)
            assert env is not None
            material = KeyMaterial(jwks_url=url, alg="RS384")
            self.client_id = oauth_keys.create(session, actor=CLI, environment=env, material=material).key.client_id

    def publish(self, *pairs: KeyPair, max_age: int = 600) -> None:
        self.server.clear()
        body = orjson.dumps({"keys": [p.public_jwk for p in pairs]})
        headers = {"Cache-Control": f"max-age={max_age}"}
        self.server.expect_request(JWKS_PATH).respond_with_data(body, headers=headers, content_type="application/json")

    def token(self, pair: KeyPair, **header: str) -> httpx2.Response:
        claims = assertion_claims(self.client_id, AUD, now=self.h.clock().timestamp())
        return self.h.token(pair.sign(claims, header or None))

    @property
    def fetches(self) -> int:
        return sum(1 for request, _ in self.server.log if request.path == JWKS_PATH)


@pytest.fixture
def monotonic() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def harness(db: Database, monotonic: FakeMonotonic) -> Iterator[Harness]:
    yield from make_harness(db, fetcher=HttpJwksFetcher(allow_private=True, monotonic=monotonic))


@pytest.fixture
def url_client(harness: Harness, httpserver: HTTPServer) -> UrlClient:
    return UrlClient(harness, httpserver, f"http://127.0.0.1:{httpserver.port}{JWKS_PATH}")


def test_key_from_a_jwks_url_works_and_the_set_is_cached(url_client: UrlClient) -> None:
    a = make_key_pair("RS384", kid="a")
    url_client.publish(a)
    assert url_client.token(a).status_code == 200
    assert url_client.token(a, jku=url_client.url).status_code == 200  # jku allowed when byte-equal
    assert url_client.fetches == 1
    request = url_client.server.log[0][0]
    assert request.headers["Accept"] == "application/json"


def test_rotation_through_the_url(url_client: UrlClient, monotonic: FakeMonotonic) -> None:
    a, b = make_key_pair("RS384", kid="a"), make_key_pair("RS384", kid="b")
    url_client.publish(a)
    assert url_client.token(a).status_code == 200
    url_client.publish(a, b)  # the client adds its next key
    monotonic.advance(6)
    assert url_client.token(b).status_code == 200  # unknown kid: one refetch
    url_client.publish(b)  # ... then removes the old one
    assert url_client.token(a).status_code == 200  # still cached
    monotonic.advance(601)  # the cached set expires
    invalid_client(url_client.token(a), "no registered key")
    assert url_client.token(b).status_code == 200


def test_unknown_kids_refetch_at_most_once_per_interval(url_client: UrlClient, monotonic: FakeMonotonic) -> None:
    a = make_key_pair("RS384", kid="a")
    url_client.publish(a)
    assert url_client.token(a).status_code == 200
    monotonic.advance(6)
    for n in range(5):
        invalid_client(url_client.token(make_key_pair("RS384", kid=f"x{n}")), "no registered key")
    assert url_client.fetches == 2


def test_loopback_url_is_refused_unless_allowed(db: Database, httpserver: HTTPServer) -> None:
    for h in make_harness(db, fetcher=HttpJwksFetcher(allow_private=False)):
        client = UrlClient(h, httpserver, f"http://127.0.0.1:{httpserver.port}{JWKS_PATH}")
        a = make_key_pair("RS384", kid="a")
        client.publish(a)
        invalid_client(client.token(a), "not allowed")
        assert client.fetches == 0


def test_redirect_to_another_host_is_refused(url_client: UrlClient) -> None:
    other = f"http://localhost:{url_client.server.port}/elsewhere.json"
    url_client.server.expect_request(JWKS_PATH).respond_with_response(Response(status=302, headers={"Location": other}))
    invalid_client(url_client.token(make_key_pair("RS384")), "another host")


def test_redirect_on_the_same_host_is_followed(url_client: UrlClient) -> None:
    a = make_key_pair("RS384", kid="a")
    url_client.server.expect_request(JWKS_PATH).respond_with_response(
        Response(status=302, headers={"Location": "/v2.json"})
    )
    url_client.server.expect_request("/v2.json").respond_with_data(orjson.dumps({"keys": [a.public_jwk]}))
    assert url_client.token(a).status_code == 200


def test_oversized_or_non_json_sets_are_refused(url_client: UrlClient) -> None:
    url_client.server.expect_request(JWKS_PATH).respond_with_data(b" " * 70_000 + b"{}")
    invalid_client(url_client.token(make_key_pair("RS384")), "too large")


def test_a_fetched_set_with_private_parts_or_other_types_does_not_match(url_client: UrlClient) -> None:
    a = make_key_pair("RS384", kid="a")
    leaked = {**a.private.as_dict(private=True), "kid": "a"}
    url_client.server.expect_request(JWKS_PATH).respond_with_data(orjson.dumps({"keys": [leaked]}))
    invalid_client(url_client.token(a), "no registered key")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://keys.example.org/jwks", "https://user:pw@x.example/j"])
def test_registration_refuses_non_http_urls(harness: Harness, url: str) -> None:
    with harness.hw.db.session() as session:
        env = session.get(Environment, harness.env_id)
        assert env is not None
        with pytest.raises(InvalidRequest):
            oauth_keys.create(session, actor=CLI, environment=env, material=KeyMaterial(jwks_url=url))


@pytest.mark.parametrize(
    ("address", "default", "allowed"),
    [
        ("8.8.8.8", True, True),
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("10.1.2.3", False, True),
        ("192.168.0.1", False, True),
        ("::ffff:127.0.0.1", False, True),
        ("169.254.169.254", False, False),  # cloud metadata
        ("fe80::1", False, False),
        ("0.0.0.0", False, False),
        ("224.0.0.1", False, False),
    ],
)
def test_address_guard(address: str, default: bool, allowed: bool) -> None:
    assert address_allowed(address, allow_private=False) is default
    assert address_allowed(address, allow_private=True) is allowed


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 300),
        ("max-age=10", 10),
        ("public, max-age=900", 900),
        ("max-age=86400", 3600),
        ("no-cache", 0),
        ("no-store, max-age=600", 0),
        ("max-age=0", 0),
    ],
)
def test_cache_lifetime_is_bounded(header: str | None, seconds: float) -> None:
    assert cache_seconds(header) == seconds
