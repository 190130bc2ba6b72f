"""SMART system scopes, v1 (``system/*.read``, ``system/Patient.write``, ``system/*.*``) and v2
(``system/*.cruds``, ``system/Patient.rs``).

A scope is read as (resource type or ``*``, a set of the permissions c r u d s): v1 ``read`` is ``rs``, ``write``
is ``cud``, ``*`` is all five. A requested scope is allowed when one allowed scope of the key covers its resource
and all its permissions. Anything else (another context such as ``patient/``, a bad permission string, an
unknown word) is malformed and refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from healthway.errors import InvalidScope

DEFAULT_SCOPES = ("system/*.*",)
MAX_SCOPES = 50
MAX_SCOPE_STRING = 2000
SCOPES_SUPPORTED = ["system/*.*", "system/*.read", "system/*.write", "system/*.cruds", "system/*.rs"]

_SCOPE = re.compile(r"system/(?P<resource>\*|[A-Z][A-Za-z]{1,63})\.(?P<perms>\*|read|write|c?r?u?d?s?)")
_V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset("cruds")}


@dataclass(frozen=True)
class Scope:
    resource: str
    permissions: frozenset[str]

    def covers(self, other: Scope) -> bool:
        return self.resource in ("*", other.resource) and other.permissions <= self.permissions


def parse_one(text: str) -> Scope:
    match = _SCOPE.fullmatch(text)
    if match is None or not match["perms"]:
        raise InvalidScope("unknown or malformed scope; use SMART system scopes such as system/*.read")
    perms = match["perms"]
    return Scope(match["resource"], _V1.get(perms) or frozenset(perms))


def split(scope: str) -> list[str]:
    """The scope parameter's space-separated values (RFC 6749 §3.3), validated, without duplicates."""
    if len(scope) > MAX_SCOPE_STRING:
        raise InvalidScope("the scope parameter is too long")
    names = list(dict.fromkeys(scope.split(" "))) if scope else []
    if "" in names or len(names) > MAX_SCOPES:
        raise InvalidScope("scopes are separated by single spaces")
    for name in names:
        parse_one(name)
    return names


def validate_allowed(scopes: list[str] | None) -> list[str]:
    """A key's allowed scopes, as given at creation (default ``system/*.*``)."""
    if not scopes:
        return list(DEFAULT_SCOPES)
    return split(" ".join(scopes))


def grant(requested: str | None, allowed: list[str]) -> str:
    """The scope string a token gets: every allowed scope when none is requested, else exactly the requested
    ones, each of which must be covered by an allowed scope (invalid_scope otherwise)."""
    if not requested:
        return " ".join(allowed)
    names = split(requested)
    allowed_scopes = [parse_one(a) for a in allowed]
    for name in names:
        wanted = parse_one(name)
        if not any(a.covers(wanted) for a in allowed_scopes):
            raise InvalidScope("a requested scope is not allowed for this key")
    return " ".join(names)
