"""``healthway destination create --kind fhir`` with OAuth client credentials, then a FHIR read through
``healthway serve`` to a loopback token endpoint + FHIR server that checks the credentials."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

import httpx
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from healthway.testing import make_key_pair
from tests.e2e.conftest import Cli, start_server

SECRET = "cs-e2e-" + secrets.token_hex(8)
PATIENT = b'{"resourceType": "Patient", "id": "x"}'


def create(cli: Cli, name: str, *args: str, check: bool = True) -> Any:
    result = cli.invoke(
        "destination", "create", "--env", "development", "--name", name, "--kind", "fhir", *args, "--json",
        check=check,
    )  # fmt: skip
    return result if not check else (json.loads(result.stdout), result)


def test_cli_stores_oauth_credentials_without_ever_showing_them(cli: Cli, tmp_path: Path) -> None:
    cli.invoke("init", "--admin-email", "admin@example.org", "--if-needed")
    secret_file, key_file = tmp_path / "secret", tmp_path / "key.pem"
    secret_file.write_text(SECRET + "\n")
    oauth = ("--url", "https://fhir.example.org/r4", "--token-url", "https://auth.example.org/token")
    made, result = create(cli, "Epic", *oauth, "--client-id", "hw", "--client-secret-file", str(secret_file),
                          "--scope", "system/*.read")  # fmt: skip
    assert made["config"]["has_client_secret"] is True and made["config"]["scope"] == "system/*.read"
    assert SECRET not in result.stdout + result.stderr
    pem = make_key_pair("ES384").private.as_pem(private=True).decode()
    key_file.write_text(pem)
    made, result = create(cli, "Cerner", *oauth, "--client-id", "hw", "--private-key-file", str(key_file),
                          "--alg", "ES384", "--kid", "k1")  # fmt: skip
    assert made["config"]["has_private_key"] is True and made["config"]["alg"] == "ES384"
    assert "PRIVATE KEY" not in result.stdout
    listed = cli.invoke("destination", "list", "--env", "development", "--json").stdout
    assert SECRET not in listed and "PRIVATE KEY" not in listed
    key_file.write_text("-----BEGIN PRIVATE KEY-----\nMIG2AgEAMBAGByqGSM49AgEGBSuBBAAi\n-----END PRIVATE KEY-----\n")
    refused = create(cli, "Broken", *oauth, "--client-id", "hw", "--private-key-file", str(key_file), "--alg", "ES384",
                     check=False)  # fmt: skip
    assert refused.returncode != 0 and "private_key must be an EC P-384 private key" in refused.stderr
    assert "PRIVATE KEY" not in refused.stdout + refused.stderr
    no_id = create(cli, "NoId", *oauth, "--client-secret-file", str(secret_file), check=False)
    assert no_id.returncode != 0 and "token_url and client_id" in no_id.stderr


def test_fhir_read_through_the_server_presents_a_token(cli: Cli, tmp_path: Path, httpserver: HTTPServer) -> None:
    issued: list[str] = []

    def token(request: Request) -> Response:
        expected = "Basic " + base64.b64encode(f"hw:{SECRET}".encode()).decode()
        if request.headers.get("Authorization") != expected or request.form.get("grant_type") != "client_credentials":
            return Response('{"error": "invalid_client"}', 401, content_type="application/json")
        issued.append(secrets.token_urlsafe(12))
        body = {"access_token": issued[-1], "token_type": "bearer", "expires_in": 300}
        return Response(json.dumps(body), content_type="application/json")

    def fhir(request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {issued[-1] if issued else ''}":
            return Response("{}", 401, content_type="application/fhir+json")
        return Response(PATIENT, content_type="application/fhir+json")

    httpserver.expect_request("/token", method="POST").respond_with_handler(token)
    httpserver.expect_request("/fhir/Patient/x").respond_with_handler(fhir)
    cli.invoke("init", "--admin-email", "admin@example.org", "--if-needed")
    (tmp_path / "secret").write_text(SECRET)
    destination, _ = create(cli, "Epic", "--url", httpserver.url_for("/fhir"), "--token-url",
                            httpserver.url_for("/token"), "--client-id", "hw", "--client-secret-file",
                            str(tmp_path / "secret"))  # fmt: skip
    source = json.loads(cli.invoke("source", "create", "--env", "development", "--name", "EHR", "--json").stdout)
    cli.invoke("subscription", "create", "--source", source["id"], "--destination", destination["id"], "--json")
    key = json.loads(cli.invoke("key", "create-legacy", "--source", source["id"], "--json").stdout)
    server = start_server(cli)
    try:
        auth = httpx.post(
            f"{server.base_url}/auth/authenticate", json={"apiKey": key["api_key"], "secret": key["secret"]}
        )
        headers = {"Authorization": f"Bearer {auth.json()['accessToken']}"}
        for _ in range(2):
            read = httpx.get(f"{server.base_url}/fhir/R4/Patient/x", headers=headers, timeout=10)
            assert read.status_code == 200 and read.content == PATIENT
        assert len(issued) == 1  # one token for both reads
    finally:
        server.stop()
    assert SECRET not in server.log and issued[0] not in server.log
