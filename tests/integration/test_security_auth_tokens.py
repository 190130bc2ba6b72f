"""Issue 14, tokens: the legacy refresh-token race (item 10) and JWKS caching per the client's Cache-Control
(item 14), through the HTTP interface on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from pytest_httpserver import HTTPServer

from healthway.services.jwks_fetcher import HttpJwksFetcher
from healthway.storage.db import Database
from healthway.testing import FakeMonotonic, make_key_pair
from tests.integration.test_oauth_jwks_url import JWKS_PATH, UrlClient
from tests.integration.test_oauth_token import invalid_client, make_harness
from tests.integration.test_security_auth import Setup, make_setup

# -- item 10: concurrent refreshes of one legacy refresh token --------------------------------------------------

TRIALS, CONCURRENT = 6, 3  # 12 refused refreshes in all: under the 20 failures a minute that would answer 429


@pytest.fixture
def s(db: Database) -> Iterator[Setup]:
    yield from make_setup(db)


def test_security_auth_concurrent_refreshes_spend_the_token_once(s: Setup) -> None:
    api_key, secret = s.legacy_key()
    for _ in range(TRIALS):
        pair = s.h.client.post("/auth/authenticate", json={"apiKey": api_key, "secret": secret}).json()
        start = threading.Barrier(CONCURRENT)

        def refresh(_: int, token: str = pair["refreshToken"], barrier: threading.Barrier = start) -> int:
            barrier.wait()
            body = {"apiKey": api_key, "refreshToken": token}
            return int(s.h.client.post("/auth/refreshToken", json=body).status_code)

        with ThreadPoolExecutor(CONCURRENT) as pool:
            statuses = sorted(pool.map(refresh, range(CONCURRENT)))
        assert statuses == [200] + [401] * (CONCURRENT - 1)


# -- item 14: a JWK Set is not reused longer than its Cache-Control allows -----------------------------------------


@pytest.fixture
def monotonic() -> FakeMonotonic:
    return FakeMonotonic()  # never moves: nothing here expires by time passing


@pytest.fixture
def url_client(db: Database, monotonic: FakeMonotonic, httpserver: HTTPServer) -> Iterator[UrlClient]:
    for h in make_harness(db, fetcher=HttpJwksFetcher(allow_private=True, monotonic=monotonic)):
        yield UrlClient(h, httpserver, f"http://127.0.0.1:{httpserver.port}{JWKS_PATH}")


def _publish(client: UrlClient, cache_control: str, *kids: str) -> None:
    client.server.clear()
    body = orjson.dumps({"keys": [KEYS[k].public_jwk for k in kids]})
    headers = {"Cache-Control": cache_control}
    client.server.expect_request(JWKS_PATH).respond_with_data(body, headers=headers, content_type="application/json")


KEYS = {kid: make_key_pair("RS384", kid=kid) for kid in ("a", "b")}


@pytest.mark.parametrize("cache_control", ["max-age=0", "no-store", "no-cache", "public, max-age=0"])
def test_security_auth_removed_jwks_key_stops_at_once_when_not_cacheable(
    url_client: UrlClient, cache_control: str
) -> None:
    _publish(url_client, cache_control, "a", "b")
    assert url_client.token(KEYS["a"]).status_code == 200
    _publish(url_client, cache_control, "b")  # the client removes key a
    invalid_client(url_client.token(KEYS["a"]), "no registered key")
    assert url_client.token(KEYS["b"]).status_code == 200


def test_security_auth_short_max_age_is_honoured(url_client: UrlClient, monotonic: FakeMonotonic) -> None:
    _publish(url_client, "max-age=30", "a")
    assert url_client.token(KEYS["a"]).status_code == 200
    _publish(url_client, "max-age=30", "b")
    assert url_client.token(KEYS["a"]).status_code == 200  # within its 30 s
    monotonic.advance(31)  # before the fix: kept at least 300 s
    invalid_client(url_client.token(KEYS["a"]), "no registered key")


def test_security_auth_unknown_kids_still_cannot_amplify(url_client: UrlClient) -> None:
    _publish(url_client, "no-store", "a")
    assert url_client.token(KEYS["a"]).status_code == 200
    for n in range(5):  # within the refetch interval: refused against the last set, no new fetch
        invalid_client(url_client.token(make_key_pair("RS384", kid=f"x{n}")), "no registered key")
    assert url_client.fetches == 1
