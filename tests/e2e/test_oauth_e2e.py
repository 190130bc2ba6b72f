"""OAuth API keys end to end: keys made with the real CLI, tokens fetched by authlib's independent client
(``OAuth2Client`` + RFC 7523 ``PrivateKeyJWT``) from a real ``healthway serve``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]
from authlib.integrations.httpx_client import OAuth2Client  # type: ignore[import-untyped]
from authlib.oauth2.rfc7523 import PrivateKeyJWT  # type: ignore[import-untyped]
from joserfc.jwk import ECKey, RSAKey
from pytest_httpserver import HTTPServer

from healthway.domain.assertions import ASSERTION_TYPE
from healthway.testing import KeyPair, assertion_claims, make_key_pair
from tests.e2e.conftest import Cli, Server, start_server


class SmartPrivateKeyJWT(PrivateKeyJWT):  # type: ignore[misc]
    """authlib signs assertions valid for an hour; SMART allows at most five minutes, so each sign sets exp."""

    def sign(self, auth: Any, token_endpoint: str) -> str:
        self.claims = {"exp": int(time.time()) + 240}
        return str(super().sign(auth, token_endpoint))


@dataclass
class Deployment:
    cli: Cli
    server: Server
    source_id: str

    @property
    def token_url(self) -> str:
        return f"{self.server.base_url}/v2/auth/token"

    def create_key(self, *args: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.cli.invoke("key", "create-oauth", *args, "--json").stdout)
        return result

    def authlib_client(self, key: dict[str, Any], private: RSAKey | ECKey) -> OAuth2Client:
        client = OAuth2Client(
            client_id=key["client_id"], client_secret=private, token_endpoint_auth_method="private_key_jwt"
        )
        client.register_client_auth_method(
            SmartPrivateKeyJWT(self.token_url, headers={"kid": key["kid"]}, alg=key["alg"])
        )
        return client


@pytest.fixture
def deployment(cli: Cli) -> Iterator[Deployment]:
    cli.invoke("init", "--org", "Northwind", "--admin-email", "admin@example.org", "--json")
    source = json.loads(cli.invoke("source", "create", "--env", "development", "--name", "EHR", "--json").stdout)
    base = f"http://127.0.0.1:{cli.env['HEALTHWAY_HTTP_PORT']}"
    cli.env |= {"HEALTHWAY_PUBLIC_URL": base, "HEALTHWAY_ALLOW_PRIVATE_JWKS_URLS": "1"}
    deployment = Deployment(cli, start_server(cli), source["id"])
    yield deployment
    if deployment.server.process.poll() is None:  # the server of the end (a test may restart it)
        deployment.server.stop()


def fetch_and_introspect(d: Deployment, key: dict[str, Any], private: RSAKey | ECKey) -> dict[str, Any]:
    with d.authlib_client(key, private) as client:
        token = client.fetch_token(d.token_url, grant_type="client_credentials")
        assert token["token_type"] == "Bearer" and token["expires_in"] == 300
        assert token["access_token"].startswith("hwat_")
        info = client.introspect_token(f"{d.server.base_url}/v2/auth/introspect", token=token["access_token"])
        assert info.status_code == 200
        result: dict[str, Any] = info.json()
        return result


def test_generated_rs384_key_with_authlib(deployment: Deployment) -> None:
    key = deployment.create_key("--source", deployment.source_id, "--generate", "--name", "ehr")
    assert set(key) >= {"id", "client_id", "alg", "kid", "private_key_pem", "private_jwk"}
    assert key["alg"] == "RS384"
    info = fetch_and_introspect(deployment, key, RSAKey.import_key(key["private_key_pem"]))
    assert (
        info["active"] is True and info["client_id"] == key["client_id"] and info["sources"] == [deployment.source_id]
    )
    listed = json.loads(deployment.cli.invoke("key", "list", "--env", "development", "--json").stdout)["oauth_keys"]
    assert [k["id"] for k in listed] == [key["id"]] and listed[0]["last_used_at"] is not None
    assert "private_key_pem" not in listed[0]


def test_generated_es384_key_with_authlib(deployment: Deployment) -> None:
    key = deployment.create_key("--env", "development", "--generate", "--alg", "ES384")
    assert key["alg"] == "ES384"
    info = fetch_and_introspect(deployment, key, ECKey.import_key(key["private_jwk"]))
    assert info["active"] is True and info["scope"] == "system/*.*"


def test_jwks_file_key_with_authlib(deployment: Deployment) -> None:
    pair = make_key_pair("ES384")
    path = deployment.cli.cwd / "jwks.json"
    path.write_text(json.dumps(pair.public_jwks))
    key = deployment.create_key("--env", "development", "--jwks-file", str(path), "--scope", "system/*.read")
    assert key["alg"] == "ES384" and key["kid"] == pair.kid and "private_key_pem" not in key
    assert isinstance(pair.private, ECKey)
    info = fetch_and_introspect(deployment, key, pair.private)
    assert info["scope"] == "system/*.read"


def test_jwks_url_key_with_authlib(deployment: Deployment, httpserver: HTTPServer) -> None:
    pair = make_key_pair("RS384", kid="published-1")
    httpserver.expect_request("/jwks.json").respond_with_data(orjson.dumps(pair.public_jwks))
    url = f"http://127.0.0.1:{httpserver.port}/jwks.json"
    key = deployment.create_key("--env", "development", "--jwks-url", url, "--alg", "RS384")
    assert key["kid"] is None and key["alg"] == "RS384"
    assert isinstance(pair.private, RSAKey)
    info = fetch_and_introspect(deployment, {**key, "kid": pair.kid}, pair.private)
    assert info["active"] is True


def test_replayed_assertion_is_refused_after_a_restart(deployment: Deployment) -> None:
    pair = make_key_pair("RS384")
    path = deployment.cli.cwd / "jwks.json"
    path.write_text(json.dumps(pair.public_jwks))
    key = deployment.create_key("--env", "development", "--jwks-file", str(path))
    assertion = sign_now(pair, key["client_id"], deployment.token_url)
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
    assert httpx.post(deployment.token_url, data=form).status_code == 200
    assert deployment.server.stop() == 0
    deployment.server = start_server(deployment.cli)
    replay = httpx.post(deployment.token_url, data=form)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"
    assert "already used" in replay.json()["error_description"]


def sign_now(pair: KeyPair, client_id: str, audience: str) -> str:
    return pair.sign(assertion_claims(client_id, audience, now=time.time()))


def test_key_delete_from_the_cli(deployment: Deployment) -> None:
    key = deployment.create_key("--env", "development", "--generate")
    deleted = json.loads(deployment.cli.invoke("key", "delete", key["id"], "--json").stdout)
    assert deleted == {"id": key["id"], "deleted": True}
    with (
        deployment.authlib_client(key, RSAKey.import_key(key["private_key_pem"])) as client,
        pytest.raises(OAuthError) as refused,
    ):
        client.fetch_token(deployment.token_url, grant_type="client_credentials")
    assert refused.value.error == "invalid_client"


def test_cli_refuses_bad_key_material(deployment: Deployment) -> None:
    path = deployment.cli.cwd / "private.json"
    private = make_key_pair("RS384")
    path.write_text(json.dumps({"keys": [{**private.private.as_dict(private=True), "kid": "k"}]}))
    result = deployment.cli.invoke("key", "create-oauth", "--env", "development", "--jwks-file", str(path), check=False)
    assert result.returncode == 1 and "private parts" in result.stderr and "Traceback" not in result.stderr
    both = deployment.cli.invoke(
        "key", "create-oauth", "--env", "development", "--generate", "--jwks-url", "https://x.example/j", check=False
    )
    assert both.returncode == 1 and "exactly one" in both.stderr
