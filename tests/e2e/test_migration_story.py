"""Issue 6's story end to end on a real server: a system on a legacy key moves to an OAuth key with no downtime.

Legacy key in use → OAuth key created → both used, requests interleaved, no failure → the legacy secret rotated
(which is how a migrated system shuts the old method off) → the legacy token and secret fail, OAuth keeps working.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from authlib.integrations.httpx_client import OAuth2Client  # type: ignore[import-untyped]
from joserfc.jwk import RSAKey

from tests.e2e.conftest import Cli, start_server
from tests.e2e.test_oauth_e2e import SmartPrivateKeyJWT

BODY = b'{"Meta": {"DataModel": "PatientAdmin", "EventType": "NewPatient"}}'


def _json(cli: Cli, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cli.invoke(*args, "--json").stdout)
    return result


def test_legacy_to_oauth_without_downtime(cli: Cli) -> None:
    cli.invoke("init", "--admin-email", "admin@example.org")
    base = f"http://127.0.0.1:{cli.env['HEALTHWAY_HTTP_PORT']}"
    cli.env["HEALTHWAY_PUBLIC_URL"] = base
    source = _json(cli, "source", "create", "--env", "production", "--name", "EHR")
    _json(cli, "source", "create", "--env", "production", "--name", "LIS")  # so an env-wide key needs the header
    legacy = _json(cli, "key", "create-legacy", "--source", source["id"])
    server = start_server(cli)
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            # 1. The system sends with its legacy key.
            pair = http.post("/auth/authenticate", json={"apiKey": legacy["api_key"], "secret": legacy["secret"]})
            assert pair.status_code == 200 and pair.headers["deprecation"] == "true"
            legacy_headers = {"Authorization": f"Bearer {pair.json()['accessToken']}"}
            assert http.post("/endpoint", content=BODY, headers=legacy_headers).status_code == 202

            # 2. An engineer creates an OAuth key covering the whole environment; the system fetches a token with
            #    an independent OAuth client and names its source with the Redox header.
            key = _json(cli, "key", "create-oauth", "--env", "production", "--generate")
            oauth = OAuth2Client(
                client_id=key["client_id"],
                client_secret=RSAKey.import_key(key["private_key_pem"]),
                token_endpoint_auth_method="private_key_jwt",
            )
            oauth.register_client_auth_method(
                SmartPrivateKeyJWT(f"{base}/v2/auth/token", headers={"kid": key["kid"]}, alg=key["alg"])
            )
            with oauth:
                token = oauth.fetch_token(f"{base}/v2/auth/token", grant_type="client_credentials")
            oauth_headers = {"Authorization": f"Bearer {token['access_token']}", "Redox-Source-Id": source["id"]}

            # 3. Both methods side by side, interleaved: not one failure, both land on the same source.
            sources = set()
            for i in range(20):
                headers = legacy_headers if i % 2 else oauth_headers
                response = http.post("/endpoint", content=BODY, headers=headers)
                assert response.status_code == 202, (i, response.text)
                sources.add(response.json()["Meta"]["Source"]["ID"])
            assert sources == {source["id"]}

            # The Platform API shows who still uses a legacy key, and when it was last used.
            admin = _json(cli, "token", "create", "--email", "admin@example.org", "--name", "migration")
            listed = http.get(
                "/platform/v1/legacy-keys",
                params={"environment": "production"},
                headers={"Authorization": f"Bearer {admin['token']}"},
            ).json()["legacy_keys"]
            assert [k["source_id"] for k in listed] == [source["id"]] and listed[0]["last_used_at"]

            # 4. Migration done: rotating the secret shuts the legacy method off at once.
            rotated = _json(cli, "key", "rotate-secret", "--api-key", legacy["api_key"])
            assert rotated["secret"] != legacy["secret"]
            assert http.post("/endpoint", content=BODY, headers=legacy_headers).status_code == 401
            old = http.post("/auth/authenticate", json={"apiKey": legacy["api_key"], "secret": legacy["secret"]})
            assert old.status_code == 401
            refresh = http.post(
                "/auth/refreshToken", json={"apiKey": legacy["api_key"], "refreshToken": pair.json()["refreshToken"]}
            )
            assert refresh.status_code == 401
            assert http.post("/endpoint", content=BODY, headers=oauth_headers).status_code == 202
    finally:
        assert server.stop() == 0
