"""A sending system's side of an OAuth API key, in the SMART Backend Services style, with authlib.

Run it with the JSON that ``healthway key create-oauth --generate --json`` printed::

    python -m healthway.examples.smart_client key.json --url http://127.0.0.1:8080

It signs a client assertion with the private key, trades it for a 5-minute access token at ``/v2/auth/token``,
and SENDs one Data Model message to ``/endpoint``. Copy it into your own code: the assertion rules are in the
README ("Client assertions").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from authlib.integrations.httpx_client import OAuth2Client  # type: ignore[import-untyped]
from authlib.oauth2.rfc7523 import PrivateKeyJWT  # type: ignore[import-untyped]

ASSERTION_LIFETIME = 240  # seconds; Healthway (like every SMART server) refuses an exp more than 300 s ahead

SAMPLE = {
    "Meta": {"DataModel": "PatientAdmin", "EventType": "NewPatient"},
    "Patient": {
        "Identifiers": [{"ID": "0000000001", "IDType": "MR"}],
        "Demographics": {"FirstName": "Timothy", "LastName": "Bixby", "DOB": "2008-01-06", "Sex": "Male"},
    },
}


class SmartPrivateKeyJWT(PrivateKeyJWT):  # type: ignore[misc]  # authlib ships no type hints
    """authlib's private_key_jwt signs assertions valid for an hour; SMART allows five minutes at most. Fresh
    claims per assertion also give each one its own ``jti``."""

    def sign(self, auth: Any, token_endpoint: str) -> str:
        self.claims = {"exp": int(time.time()) + ASSERTION_LIFETIME}
        return str(super().sign(auth, token_endpoint))


def client(key: dict[str, Any], token_url: str) -> OAuth2Client:
    """An httpx client that fetches (and refetches) its access token with a signed client assertion."""
    oauth = OAuth2Client(
        client_id=key["client_id"],
        client_secret=key["private_key_pem"],  # authlib's name for the key the assertion is signed with
        token_endpoint=token_url,
        token_endpoint_auth_method="private_key_jwt",  # noqa: S106 (a method name, not a password)
    )
    # The header names the key (kid, RFC 7638 thumbprint) and its pinned algorithm; aud is the token URL.
    oauth.register_client_auth_method(SmartPrivateKeyJWT(token_url, headers={"kid": key["kid"]}, alg=key["alg"]))
    return oauth


def send(key: dict[str, Any], base_url: str, source_id: str | None = None) -> dict[str, Any]:
    base_url = base_url.rstrip("/")
    with client(key, f"{base_url}/v2/auth/token") as oauth:
        oauth.fetch_token(grant_type="client_credentials")
        headers = {"Healthway-Source-Id": source_id} if source_id else {}
        answer = oauth.post(f"{base_url}/endpoint", json=SAMPLE, headers=headers)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Get a token with an OAuth API key and SEND one message.")
    parser.add_argument("key_file", type=Path, help="what `healthway key create-oauth --generate --json` printed")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="Healthway's public URL")
    parser.add_argument("--source", help="the source ID (needed when the key covers several sources)")
    args = parser.parse_args()
    answer = send(json.loads(args.key_file.read_text()), args.url, args.source)
    print(json.dumps(answer, indent=2))


if __name__ == "__main__":
    main()
