"""SMART system scopes, v1 (``system/*.read``, ``system/Patient.write``, ``system/*.*``) and v2
(``system/*.cruds``, ``system/Patient.rs``).

A scope is read as (resource type or ``*``, a set of the permissions c r u d s): v1 ``read`` is ``rs``, ``write``
is ``cud``, ``*`` is all five. A requested scope is allowed when one allowed scope of the key covers its resource
and all its permissions. Anything else (another context such as ``patient/``, a bad permission string, an
unknown word) is malformed and refused.

Enforcement (``require``): each data request needs one permission, any one of a few, on one resource type:

- ``POST /endpoint`` SEND: ``c`` (create) on the data model's resource type (``DATA_MODELS``);
- ``POST /endpoint`` Query (EventType ending in ``Query``): ``r`` or ``s`` on the data model's resource type;
- ``POST /fhir/R4/$process-message``: ``c`` on each resource type the Bundle carries besides its MessageHeader
  (on MessageHeader when it carries nothing else);
- ``GET /fhir/R4/{type}/{id}``: ``r`` on ``{type}``; ``GET /fhir/R4/{type}?...``: ``s`` on ``{type}``.

v1 ``read`` gives ``r`` and ``s``, ``write`` gives ``c`` (and ``u``, ``d``), ``*`` everything; a ``*`` resource
covers every type. Sending a message creates data at the receiver, hence ``c`` (SMART v2 "create"): ``u``
(update) alone does not send. A data model missing from the table maps to no resource type: only a wildcard
scope (``system/*.c``, ``system/*.write``, ``system/*.*``) allows it. A refusal is ``InsufficientScope`` (403,
RFC 6750 ``insufficient_scope``) naming a scope that would allow the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from healthway.errors import InsufficientScope, InvalidScope

DEFAULT_SCOPES = ("system/*.*",)
MAX_SCOPES = 50
MAX_SCOPE_STRING = 2000
SCOPES_SUPPORTED = ["system/*.*", "system/*.read", "system/*.write", "system/*.cruds", "system/*.rs"]

_SCOPE = re.compile(r"system/(?P<resource>\*|[A-Z][A-Za-z]{1,63})\.(?P<perms>\*|read|write|c?r?u?d?s?)")
_RESOURCE = re.compile(r"[A-Z][A-Za-z]{1,63}")
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


# -- enforcement --------------------------------------------------------------------------------------------------

# Redox Data Models → the FHIR R4 resource type whose scope governs them. Keys are compared without spaces and
# case ("Clinical Summary" = "ClinicalSummary"). One resource per data model: the one its events are about.
DATA_MODELS: dict[str, str] = {
    "PatientAdmin": "Patient",
    "PatientHub": "Patient",
    "PatientSearch": "Patient",
    "Scheduling": "Appointment",
    "SurgicalScheduling": "Appointment",
    "Results": "DiagnosticReport",
    "Orders": "ServiceRequest",
    "Referral": "ServiceRequest",
    "ClinicalSummary": "Composition",
    "Notes": "DocumentReference",
    "Media": "Media",
    "Financial": "ChargeItem",
    "Claim": "Claim",
    "Inventory": "SupplyDelivery",
    "Flowsheet": "Observation",
    "Device": "Device",
    "Medications": "MedicationRequest",
    "Provider": "Practitioner",
    "Organization": "Organization",
    "Research": "ResearchSubject",
    "Vaccination": "Immunization",
    "ClinicalDecisions": "GuidanceResponse",
}
_DATA_MODELS = {name.lower(): resource for name, resource in DATA_MODELS.items()}
CREATE, READ, SEARCH = frozenset("c"), frozenset("r"), frozenset("s")


@dataclass(frozen=True)
class Need:
    """One permission of ``any_of`` on ``resource`` (None: a resource only a ``*`` scope covers)."""

    resource: str | None
    any_of: frozenset[str]

    def met_by(self, scope: Scope) -> bool:
        return scope.resource in ("*", self.resource) and bool(scope.permissions & self.any_of)

    @property
    def hint(self) -> str:
        """A scope that would allow it, for the WWW-Authenticate challenge."""
        return f"system/{self.resource or '*'}.{''.join(sorted(self.any_of, key='cruds'.index))}"


def data_model_resource(data_model: str) -> str | None:
    return _DATA_MODELS.get(data_model.replace(" ", "").lower())


def for_data_model(data_model: str, *, query: bool) -> Need:
    """A Data Model API request: SEND creates, a ``...Query`` reads or searches."""
    return Need(data_model_resource(data_model), READ | SEARCH if query else CREATE)


def for_fhir_message(resource_types: frozenset[str]) -> list[Need]:
    """``$process-message``: create on every resource type the message carries."""
    # A type that is not a FHIR resource type name maps to no resource (only a wildcard scope covers it), so
    # nothing odd from the body reaches the WWW-Authenticate challenge.
    return [Need(t if _RESOURCE.fullmatch(t) else None, CREATE) for t in sorted(resource_types)]


def for_fhir_read(resource_type: str, *, search: bool) -> Need:
    return Need(resource_type, SEARCH if search else READ)


@lru_cache(maxsize=4096)
def _granted(scope: str) -> tuple[Scope, ...]:
    """A token's scope string, parsed once per distinct string (hot path: no parsing per request)."""
    return tuple(parse_one(name) for name in scope.split())


def require(scope: str, *needs: Need) -> None:
    """Raise InsufficientScope unless, for every need, some granted scope meets it."""
    granted = _granted(scope)
    for need in needs:
        if not any(need.met_by(g) for g in granted):
            message = f"this token's scopes do not allow this request; it needs {need.hint}"
            raise InsufficientScope(message, scope=need.hint)
