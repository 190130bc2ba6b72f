"""Public keys of OAuth clients: which algorithms we accept, which JWKs fit them, and server-side generation.

Every check here is about *registering* or *selecting* a key; the signature itself is verified by joserfc
(see ``domain.assertions``). A key is accepted only when it is public, of a known type that fits the pinned
algorithm, and (RSA) at least 2048 bits.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

from healthway.errors import InvalidRequest

PublicKey = RSAKey | ECKey | OKPKey

# Pinned algorithm → (kty, crv). RS384/ES384 are the defaults (SMART Backend Services); the others are allowed
# when chosen per key. HMAC and "none" are absent on purpose: a client proves itself with a private key.
ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "RS384": ("RSA", None),
    "ES384": ("EC", "P-384"),
    "RS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "PS384": ("RSA", None),
    "EdDSA": ("OKP", "Ed25519"),
}
DEFAULT_ALG = "RS384"
GENERATED_ALGS = ("RS384", "ES384")
MIN_RSA_BITS = 2048
MAX_KEYS_PER_SET = 20
MAX_KID_LENGTH = 255
# Members that only a private (or symmetric) key has; a registered key carrying any of them is refused.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_KEY_CLASSES: dict[str, type[PublicKey]] = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}


@dataclass(frozen=True)
class GeneratedKey:
    public_jwk: dict[str, Any]
    private_jwk: dict[str, Any]
    private_key_pem: str
    kid: str


def check_alg(alg: str) -> str:
    if alg not in ALGORITHMS:
        raise InvalidRequest(f"unsupported algorithm; use one of {', '.join(ALGORITHMS)}")
    return alg


def fits(jwk: dict[str, Any], alg: str) -> bool:
    """Whether the JWK's ``kty`` (and ``crv``) is the one ``alg`` signs with."""
    kty, crv = ALGORITHMS[alg]
    return jwk.get("kty") == kty and (crv is None or jwk.get("crv") == crv)


def _problem(jwk: Any, alg: str) -> str | None:
    """Why ``jwk`` cannot be registered for ``alg``, or None when it can (structure only; see ``public_key``)."""
    if not isinstance(jwk, dict):
        return "each key must be a JSON object"
    kid = jwk.get("kid")
    checks = (
        (
            isinstance(kid, str) and 0 < len(kid) <= MAX_KID_LENGTH and kid.isprintable(),
            f"each key needs a printable 'kid' of 1 to {MAX_KID_LENGTH} characters",
        ),
        (jwk.get("kty") in _KEY_CLASSES, "unknown or unsupported key type (kty); use RSA, EC or OKP public keys"),
        (not PRIVATE_MEMBERS & jwk.keys(), "a key contains private parts; register only the public key"),
        (fits(jwk, alg), f"key type {jwk.get('kty')}/{jwk.get('crv', '-')} does not fit the algorithm {alg}"),
        (
            jwk.get("use", "sig") == "sig" and jwk.get("alg", alg) == alg,
            f"key is marked for another use or algorithm than {alg} signatures",
        ),
    )
    return next((message for ok, message in checks if not ok), None)


def _rsa_bits(modulus: Any) -> int:
    if not isinstance(modulus, str) or len(modulus) > 2048:
        return 0
    try:
        return int.from_bytes(base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4))).bit_length()
    except ValueError:
        return 0


@lru_cache(maxsize=4096)
def _import(canonical: bytes) -> PublicKey:
    jwk = orjson.loads(canonical)
    return _KEY_CLASSES[jwk["kty"]].import_key(jwk)


def public_key(jwk: dict[str, Any], alg: str) -> PublicKey:
    """The joserfc key for a registered or fetched JWK; InvalidRequest when it is not an acceptable public key.

    Parsed keys are cached by their canonical JSON: the token endpoint looks the same few keys up all the time.
    """
    problem = _problem(jwk, alg)
    if problem:
        raise InvalidRequest(problem)
    if jwk["kty"] == "RSA" and _rsa_bits(jwk.get("n")) < MIN_RSA_BITS:  # checked before joserfc warns about it
        raise InvalidRequest(f"RSA keys must have at least {MIN_RSA_BITS} bits")
    try:
        key = _import(orjson.dumps(jwk, option=orjson.OPT_SORT_KEYS))
    except (JoseError, ValueError, TypeError, KeyError):
        raise InvalidRequest("a key's parameters are not a valid public key") from None
    return key


def validate_set(jwks: Any, alg: str) -> dict[str, Any]:
    """A JWK Set to register by value: 1..20 acceptable public keys with unique ``kid``s. Returns it normalized."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not 0 < len(keys) <= MAX_KEYS_PER_SET:
        raise InvalidRequest(f'a JWK Set is an object {{"keys": [...]}} with 1 to {MAX_KEYS_PER_SET} keys')
    for jwk in keys:
        public_key(jwk, alg)
    kids = [jwk["kid"] for jwk in keys]
    if len(set(kids)) != len(kids):
        raise InvalidRequest("every key in the set needs its own kid")
    return {"keys": [dict(jwk) for jwk in keys]}


def infer_alg(jwks: Any) -> str:
    """The algorithm a JWK Set implies when none is chosen: its keys' ``alg``, else by key type."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    first = keys[0] if isinstance(keys, list) and keys and isinstance(keys[0], dict) else {}
    if isinstance(first.get("alg"), str) and first["alg"] in ALGORITHMS:
        return str(first["alg"])
    by_type = {("EC", "P-384"): "ES384", ("EC", "P-256"): "ES256", ("OKP", "Ed25519"): "EdDSA"}
    return by_type.get((str(first.get("kty")), str(first.get("crv"))), DEFAULT_ALG)


def select(jwks: dict[str, Any], kid: str, alg: str) -> PublicKey | None:
    """The one key of the set with this exact ``kid`` that fits ``alg``; None when there is not exactly one."""
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        return None
    matches = [jwk for jwk in keys if isinstance(jwk, dict) and jwk.get("kid") == kid and fits(jwk, alg)]
    if len(matches) != 1:
        return None
    try:
        return public_key(matches[0], alg)
    except InvalidRequest:  # a fetched set may hold junk; it simply does not match
        return None


def generate(alg: str) -> GeneratedKey:
    """A new key pair for ``alg`` (RSA-2048 for RS384, P-384 for ES384). The private half is returned, never kept."""
    if alg not in GENERATED_ALGS:
        raise InvalidRequest(f"the server generates only {' or '.join(GENERATED_ALGS)} keys")
    key: RSAKey | ECKey = RSAKey.generate_key(2048, private=True) if alg == "RS384" else ECKey.generate_key("P-384")
    kid = key.thumbprint()  # RFC 7638: stable and unique per key
    members = {"kid": kid, "alg": alg, "use": "sig"}
    return GeneratedKey(
        public_jwk={**key.as_dict(private=False), **members},
        private_jwk={**key.as_dict(private=True), **members},
        private_key_pem=key.as_pem(private=True).decode(),
        kid=kid,
    )
