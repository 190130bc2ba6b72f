"""The pure checks of client assertions, JWKs and scopes (no I/O)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from healthway.domain import assertions, jwk, scopes
from healthway.errors import InvalidClient, InvalidRequest, InvalidScope
from healthway.testing import assertion_claims, make_key_pair

AUD = "https://hw.example.org/v2/auth/token"
NOW = 1_800_000_000.0
CLIENT = "7d3f0c1e-0000-4000-8000-000000000001"
DUPLICATE = b'{"alg":"RS384","alg":"none"}'
NAN = b'{"exp":NaN}'


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**extra: Any) -> dict[str, Any]:
    return assertion_claims(CLIENT, AUD, now=NOW, **extra)


def refused(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidClient) as info:
        call(*args, **kwargs)
    return info.value.message


# -- parse ------------------------------------------------------------------------------------------------------


def test_parse_reads_header_and_claims() -> None:
    pair = make_key_pair("ES384")
    parsed = assertions.parse(pair.sign(claims()))
    assert parsed.header["alg"] == "ES384" and parsed.issuer == CLIENT


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a.b", "signed JWT"),
        ("a.b.c.d.e", "signed JWT"),  # the shape of a JWE
        (f"{b64(b'{}')}.{b64(b'{}')}.", "no valid signature"),
        ("!!!.e30.c2ln", "not a well-formed JWT"),
        (f"{b64(b'[1]')}.{b64(b'{}')}.c2ln", "not a well-formed JWT"),
        (f"{b64(DUPLICATE)}.{b64(b'{}')}.c2ln", "not a well-formed JWT"),
        (f"{b64(b'{}')}.{b64(NAN)}.c2ln", "not a well-formed JWT"),
        ("x" * (assertions.MAX_ASSERTION_LENGTH + 1), "too large"),
    ],
)
def test_parse_refuses_malformed_assertions(value: str, expected: str) -> None:
    assert expected in refused(assertions.parse, value)


def test_issuer_must_be_a_short_string() -> None:
    parsed = assertions.parse(f"{b64(b'{}')}.{b64(json.dumps({'iss': 5}).encode())}.c2ln")
    with pytest.raises(InvalidClient):
        _ = parsed.issuer


# -- header -----------------------------------------------------------------------------------------------------


def test_header_returns_the_kid() -> None:
    assert assertions.check_header({"alg": "RS384", "kid": "k1", "typ": "JWT"}, alg="RS384", jwks_url=None) == "k1"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS384", "RS256", "PS384", "ES384", None])
def test_header_alg_must_be_the_pinned_one(alg: str | None) -> None:
    header = {"alg": alg, "kid": "k1", "typ": "JWT"}
    assert "alg" in refused(assertions.check_header, header, alg="RS384", jwks_url=None)


@pytest.mark.parametrize("kid", [None, "", 7, "a\x00b", "x" * 256])
def test_header_needs_a_sane_kid(kid: object) -> None:
    assert "kid" in refused(
        assertions.check_header, {"alg": "RS384", "kid": kid, "typ": "JWT"}, alg="RS384", jwks_url=None
    )


@pytest.mark.parametrize("typ", [None, "jwt", "JWS", "at+jwt"])
def test_header_typ_must_be_jwt(typ: str | None) -> None:
    header = {"alg": "RS384", "kid": "k", "typ": typ}
    assert "typ" in refused(assertions.check_header, header, alg="RS384", jwks_url=None)


def test_header_jku_only_when_byte_equal_to_the_registered_url() -> None:
    url = "https://keys.example.org/jwks.json"
    header = {"alg": "RS384", "kid": "k", "typ": "JWT", "jku": url}
    assert assertions.check_header(header, alg="RS384", jwks_url=url) == "k"
    for other in (url + "/", "https://KEYS.example.org/jwks.json", "file:///etc/passwd", "http://127.0.0.1/jwks"):
        assert "jku" in refused(assertions.check_header, {**header, "jku": other}, alg="RS384", jwks_url=url)
    assert "jku" in refused(assertions.check_header, header, alg="RS384", jwks_url=None)


# -- signature --------------------------------------------------------------------------------------------------


def test_signature_is_checked_with_the_registered_key() -> None:
    pair, other = make_key_pair("RS384"), make_key_pair("RS384")
    parsed = assertions.parse(pair.sign(claims()))
    assertions.verify_signature(parsed, jwk.public_key(pair.public_jwk, "RS384"), "RS384")
    wrong = jwk.public_key(other.public_jwk, "RS384")
    assert "signature" in refused(assertions.verify_signature, parsed, wrong, "RS384")


def test_ecdsa_signature_of_zeros_is_refused() -> None:
    pair = make_key_pair("ES384")
    head, body, _ = pair.sign(claims()).split(".")
    parsed = assertions.parse(f"{head}.{body}.{b64(bytes(96))}")
    assert "signature" in refused(
        assertions.verify_signature, parsed, jwk.public_key(pair.public_jwk, "ES384"), "ES384"
    )


# -- claims -----------------------------------------------------------------------------------------------------


def check(**overrides: Any) -> assertions.Verified:
    values = {k: v for k, v in claims(**overrides).items() if v is not ...}
    return assertions.check_claims(values, client_id=CLIENT, audience=AUD, now=NOW)


def test_valid_claims_pass() -> None:
    verified = check(aud=[AUD], iat=NOW + 8, nbf=NOW + 8)
    assert verified.client_id == CLIENT and verified.expires_at == NOW + 120


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"iss": "someone-else"}, "iss and sub"),
        ({"sub": "someone-else"}, "iss and sub"),
        ({"aud": AUD + "/"}, "aud"),
        ({"aud": AUD.replace("https", "http")}, "aud"),
        ({"aud": [AUD, "https://other.example.org"]}, "aud"),
        ({"aud": ...}, "aud"),
        ({"exp": ...}, "no exp"),
        ({"exp": NOW - 1}, "expired"),
        ({"exp": NOW + 301}, "more than 300"),
        ({"exp": "1800000100"}, "number"),
        ({"exp": True}, "number"),
        ({"iat": NOW + 60}, "iat"),
        ({"nbf": NOW + 60}, "nbf"),
        ({"jti": ...}, "jti"),
        ({"jti": "j" * 256}, "jti"),
        ({"jti": 42}, "jti"),
    ],
)
def test_bad_claims_are_refused(overrides: dict[str, Any], expected: str) -> None:
    assert expected in refused(check, **overrides)


def test_a_too_long_lifetime_names_the_limit_and_the_value_received() -> None:
    # authlib's default assertion lifetime is an hour: the message must say what to change.
    message = refused(check, exp=NOW + 3600)
    assert "more than 300 seconds ahead (received: 3600 s ahead;" in message and "lifetime" in message


# -- keys -------------------------------------------------------------------------------------------------------


def test_validate_set_accepts_public_keys_and_normalizes() -> None:
    pair = make_key_pair("ES384")
    assert jwk.validate_set(pair.public_jwks, "ES384") == pair.public_jwks
    assert jwk.infer_alg(pair.public_jwks) == "ES384"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda k: {**k, "d": "AAAA"}, "private"),
        (lambda k: {**k, "kty": "oct"}, "kty"),
        (lambda k: {**k, "kty": "XYZ"}, "kty"),
        (lambda k: {key: v for key, v in k.items() if key != "kid"}, "kid"),
        (lambda k: {**k, "alg": "RS256"}, "algorithm"),
        (lambda k: {**k, "use": "enc"}, "use"),
    ],
)
def test_validate_set_refuses_bad_keys(mutate: Any, expected: str) -> None:
    pair = make_key_pair("RS384")
    with pytest.raises(InvalidRequest, match=expected):
        jwk.validate_set({"keys": [mutate(pair.public_jwk)]}, "RS384")


def test_validate_set_refuses_a_kty_that_does_not_fit_the_alg() -> None:
    with pytest.raises(InvalidRequest, match="does not fit"):
        jwk.validate_set(make_key_pair("ES384").public_jwks, "RS384")


def test_validate_set_refuses_duplicate_kids_and_small_rsa() -> None:
    a, b = make_key_pair("RS384", kid="same"), make_key_pair("RS384", kid="same")
    with pytest.raises(InvalidRequest, match="own kid"):
        jwk.validate_set({"keys": [a.public_jwk, b.public_jwk]}, "RS384")
    small_key = rsa.generate_private_key(65537, 1024)  # noqa: S505 (too small is the point)
    numbers = small_key.public_key().public_numbers()
    small = {"kty": "RSA", "kid": "small", "e": "AQAB", "n": b64(numbers.n.to_bytes(128))}
    with pytest.raises(InvalidRequest, match="2048"):
        jwk.validate_set({"keys": [small]}, "RS384")


def test_select_needs_exactly_one_fitting_key() -> None:
    a, b = make_key_pair("RS384", kid="a"), make_key_pair("ES384", kid="b")
    jwks = {"keys": [a.public_jwk, b.public_jwk]}
    assert jwk.select(jwks, "a", "RS384") is not None
    assert jwk.select(jwks, "b", "RS384") is None  # kid known, but an EC key cannot verify RS384
    assert jwk.select(jwks, "zzz", "RS384") is None


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_generate_returns_a_private_key_and_stores_only_public(alg: str) -> None:
    generated = jwk.generate(alg)
    assert generated.private_key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert "d" in generated.private_jwk and "d" not in generated.public_jwk
    assert jwk.public_key(generated.public_jwk, alg) is not None


# -- scopes -----------------------------------------------------------------------------------------------------


def test_scopes_default_to_everything_allowed() -> None:
    assert scopes.grant(None, ["system/*.read", "system/Patient.cruds"]) == "system/*.read system/Patient.cruds"


@pytest.mark.parametrize(
    ("requested", "allowed"),
    [
        ("system/*.read", ["system/*.*"]),
        ("system/Patient.rs", ["system/*.read"]),
        ("system/Patient.write", ["system/Patient.cud"]),
        ("system/Observation.cruds system/*.rs", ["system/*.*"]),
    ],
)
def test_requested_scopes_within_the_allowed_ones_are_granted(requested: str, allowed: list[str]) -> None:
    assert scopes.grant(requested, allowed) == requested


@pytest.mark.parametrize(
    ("requested", "allowed"),
    [
        ("system/*.write", ["system/*.read"]),
        ("system/*.read", ["system/Patient.read"]),
        ("patient/*.read", ["system/*.*"]),
        ("system/*.sr", ["system/*.*"]),
        ("system/*.", ["system/*.*"]),
        ("openid", ["system/*.*"]),
        ("system/*.read  system/*.rs", ["system/*.*"]),
    ],
)
def test_other_scopes_are_invalid(requested: str, allowed: list[str]) -> None:
    with pytest.raises(InvalidScope):
        scopes.grant(requested, allowed)
