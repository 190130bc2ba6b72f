"""OAuth keys through the Platform API, revocation, introspection, discovery and bearer source selection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from joserfc.jwk import ECKey

from healthway.domain.actors import CLI
from healthway.errors import NotFound
from healthway.services import oauth_keys, personal_tokens, users
from healthway.services.oauth_keys import KeyMaterial
from healthway.storage.db import Database
from healthway.storage.models import AuditEvent, Environment
from healthway.testing import KeyPair, assertion_claims, make_key_pair
from tests.factories import make_source
from tests.integration.test_oauth_token import AUD, PUBLIC_URL, Harness, invalid_client, make_harness

KEYS = "/platform/v1/oauth-keys"


@pytest.fixture
def h(db: Database) -> Iterator[Harness]:
    yield from make_harness(db)


def admin(h: Harness) -> dict[str, str]:
    """The organization owner's personal access token (admin in every environment)."""
    with h.hw.db.session() as session:
        user = users.find_by_email(session, "admin@northwind.example.org")
        assert user is not None
        _, token = personal_tokens.create(session, user=user, name="oauth tests")
    return {"Authorization": f"Bearer {token}"}


def test_platform_create_generate_returns_the_private_key_once(h: Harness) -> None:
    headers = admin(h)
    created = h.client.post(
        KEYS, json={"environment": "development", "generate": True, "alg": "ES384"}, headers=headers
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["alg"] == "ES384" and body["kid"] and body["private_key_pem"].startswith("-----BEGIN PRIVATE KEY")
    assert body["private_jwk"]["d"] and body["sources"] == []
    listed = h.client.get(KEYS, params={"environment": "development"}, headers=headers).json()["oauth_keys"]
    mine = next(k for k in listed if k["id"] == body["id"])
    assert "private_key_pem" not in mine and "private_jwk" not in mine
    with h.hw.db.session() as session:  # only the public key is stored
        found = oauth_keys.find(session, body["id"])
        assert found is not None and found[0].jwks is not None
        assert not {"d", "p", "q"} & set(found[0].jwks["keys"][0])
    # the generated key works at the token endpoint
    private = ECKey.import_key(body["private_key_pem"])
    pair = KeyPair("ES384", body["kid"], private)
    claims = assertion_claims(body["client_id"], AUD, now=h.clock().timestamp())
    assert h.token(pair.sign(claims)).status_code == 200


def test_platform_create_by_value_and_by_url_limited_to_sources(h: Harness) -> None:
    headers = admin(h)
    pair = make_key_pair("RS384")
    body = {"sources": [h.source_id], "jwks": pair.public_jwks, "name": "lab", "scopes": ["system/*.read"]}
    created = h.client.post(KEYS, json=body, headers=headers)
    assert created.status_code == 201, created.text
    view = created.json()
    assert (view["environment"], view["sources"], view["kid"], view["scopes"]) == (
        "development",
        [h.source_id],
        pair.kid,
        ["system/*.read"],
    )
    by_url = h.client.post(
        KEYS, json={"environment": "staging", "jwks_url": "https://k.example.org/j"}, headers=headers
    )
    assert by_url.status_code == 201 and by_url.json()["jwks_url"] == "https://k.example.org/j"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"generate": True, "jwks_url": "https://k.example.org/j"}, "exactly one"),
        ({"jwks": {"keys": [{"kty": "RSA", "kid": "a", "n": "AQAB", "e": "AQAB", "d": "AQAB"}]}}, "private"),
        ({"jwks": {"keys": [{"kty": "oct", "kid": "a", "k": "c2VjcmV0"}]}}, "kty"),
        ({"jwks_url": "file:///etc/passwd"}, "http"),
        ({"generate": True, "alg": "HS256"}, "generates only"),
        ({"generate": True, "scopes": ["patient/*.read"]}, "scope"),
    ],
)
def test_platform_create_refuses_bad_material(h: Harness, body: dict[str, Any], message: str) -> None:
    response = h.client.post(KEYS, json={"environment": "development", **body}, headers=admin(h))
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]


def test_platform_delete_stops_the_key_and_is_audited(h: Harness) -> None:
    headers = admin(h)
    access = h.token().json()["access_token"]
    with h.hw.db.session() as session:
        found = oauth_keys.find(session, h.client_id)
        assert found is not None
        key_id = found[0].id
    assert h.client.delete(f"{KEYS}/{key_id}", headers=headers).status_code == 204
    assert h.client.delete(f"{KEYS}/{key_id}", headers=headers).status_code == 404
    invalid_client(h.token(), "unknown client")
    assert h.client.get("/test/whoami", headers={"Authorization": f"Bearer {access}"}).status_code == 401
    with h.hw.db.session() as session:
        actions = set(session.scalars(sa.select(AuditEvent.action).where(AuditEvent.subject_id == key_id)))
    assert actions == {"oauth_key:create", "oauth_key:delete"}


# -- revoke, introspect, discovery ----------------------------------------------------------------------------


def test_revoke_and_introspect(h: Harness) -> None:
    access = h.token().json()["access_token"]
    introspected = h.client.post("/v2/auth/introspect", data={**h.form(h.assertion()), "token": access})
    assert introspected.status_code == 200
    body = introspected.json()
    assert body["active"] is True and body["client_id"] == h.client_id and body["scope"] == "system/*.*"
    assert h.client.post("/v2/auth/revoke", data={**h.form(h.assertion()), "token": access}).status_code == 200
    assert h.client.post("/v2/auth/introspect", data={**h.form(h.assertion()), "token": access}).json() == {
        "active": False
    }
    who = h.client.get("/test/whoami", headers={"Authorization": f"Bearer {access}"})
    assert who.status_code == 401 and who.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_revoke_answers_200_for_unknown_tokens_and_introspect_false(h: Harness) -> None:
    assert h.client.post("/v2/auth/revoke", data={**h.form(h.assertion()), "token": "hwat_nope"}).status_code == 200
    result = h.client.post("/v2/auth/introspect", data={**h.form(h.assertion()), "token": "garbage"})
    assert result.json() == {"active": False}


def test_revoke_and_introspect_need_client_authentication(h: Harness) -> None:
    access = h.token().json()["access_token"]
    for path in ("/v2/auth/revoke", "/v2/auth/introspect"):
        invalid_client(h.client.post(path, data={**h.form(h.assertion(aud="x")), "token": access}), "aud")
    assert h.client.post("/v2/auth/introspect", data={**h.form(h.assertion()), "token": access}).json()["active"]


def test_another_client_cannot_revoke_my_token(h: Harness) -> None:
    access = h.token().json()["access_token"]
    other = make_key_pair("RS384")
    other_id = h.add_key(other)
    form = {**h.form(other.sign(assertion_claims(other_id, AUD, now=h.clock().timestamp()))), "token": access}
    assert h.client.post("/v2/auth/revoke", data=form).status_code == 200
    assert h.client.get("/test/whoami", headers={"Authorization": f"Bearer {access}"}).status_code == 200


@pytest.mark.parametrize("path", ["/.well-known/smart-configuration", "/.well-known/oauth-authorization-server"])
def test_discovery(h: Harness, path: str) -> None:
    body = h.client.get(path).json()
    assert body["token_endpoint"] == AUD and body["issuer"] == PUBLIC_URL
    assert body["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert {"RS384", "ES384"} <= set(body["token_endpoint_auth_signing_alg_values_supported"])
    assert body["grant_types_supported"] == ["client_credentials"]
    assert "system/*.read" in body["scopes_supported"] and "system/*.cruds" in body["scopes_supported"]


# -- bearer authentication and source selection ---------------------------------------------------------------


def env_wide_token(h: Harness) -> str:
    pair = make_key_pair("ES384")
    client_id = h.add_key(pair)  # no sources listed: every source of the environment
    return str(h.token(pair.sign(assertion_claims(client_id, AUD, now=h.clock().timestamp()))).json()["access_token"])


def whoami(h: Harness, token: str, **headers: str) -> Any:
    return h.client.get("/test/whoami", headers={"Authorization": f"Bearer {token}", **headers})


def test_bearer_missing_unknown_or_expired_is_401(h: Harness) -> None:
    access = h.token().json()["access_token"]
    assert h.client.get("/test/whoami").status_code == 401
    assert whoami(h, "hwat_unknown").status_code == 401
    h.clock.advance(301)
    expired = whoami(h, access)
    assert expired.status_code == 401 and expired.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_source_header_needed_when_the_key_covers_several(h: Harness) -> None:
    with h.hw.db.session() as session:
        env = session.get(Environment, h.env_id)
        assert env is not None
        second = make_source(session, env, "LIS").id
    token = env_wide_token(h)
    assert whoami(h, token).status_code == 400
    assert whoami(h, token, **{"Healthway-Source-Id": second}).json()["source"] == second
    assert whoami(h, token, **{"Redox-Source-Id": h.source_id}).json()["source"] == h.source_id


def test_source_not_covered_is_403(h: Harness) -> None:
    with h.hw.db.session() as session:
        env = session.get(Environment, h.env_id)
        assert env is not None
        other = make_source(session, env, "Other").id
    access = h.token().json()["access_token"]  # this key is limited to h.source_id
    assert whoami(h, access).json()["source"] == h.source_id
    assert whoami(h, access, **{"Healthway-Source-Id": other}).status_code == 403


def test_cli_actor_service_create_validates_sources_environment(h: Harness) -> None:
    with h.hw.db.session() as session:
        prod = session.scalar(sa.select(Environment).where(Environment.name == "production"))
        assert prod is not None
        with pytest.raises(NotFound, match="not found"):
            oauth_keys.create(
                session, actor=CLI, environment=prod, material=KeyMaterial(generate=True), source_ids=[h.source_id]
            )
