"""Inbound message shapes: the Data Model API's ``Meta`` and FHIR message Bundles. Pure validation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from healthway.errors import InvalidRequest


class ContentType(StrEnum):
    """The media types Healthway reads, stores and sends: the one place each is spelled."""

    JSON = "application/json"
    FHIR_JSON = "application/fhir+json"
    HL7V2 = "x-application/hl7-v2+er7"  # the type Redox and most engines give HL7v2 ER7 over HTTP
    TEXT = "text/plain"
    FORM = "application/x-www-form-urlencoded"

    @classmethod
    def of(cls, header: str) -> ContentType | None:
        """The known type a ``Content-Type`` value names (parameters and case ignored), or None."""
        media_type = header.split(";", maxsplit=1)[0].strip().lower()
        return cls(media_type) if media_type in cls._value2member_map_ else None


MAX_NAME = 100
# Redox's sample payloads (and many clients built from them) carry the nil UUID as a placeholder destination;
# it names no destination, so it does not narrow routing.
NIL_UUID = "00000000-0000-0000-0000-000000000000"
# C0 and C1 control characters (NUL among them: PostgreSQL text cannot hold it) and lone surrogates (not UTF-8).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def check_text(value: str, what: str) -> str:
    """``value`` unchanged, or 400 when it holds a control character. The message names the field, never the value
    (metadata is stored, indexed, shown and logged: it must be plain text)."""
    if _CONTROL.search(value):
        raise InvalidRequest(f"{what} must not contain control characters")
    return value


@dataclass(frozen=True)
class DataModelMeta:
    data_model: str
    event_type: str
    destination_ids: list[str] | None  # Meta.Destinations narrows routing when present
    test: bool
    meta: dict[str, Any]  # the request's Meta, echoed in the response

    @property
    def is_query(self) -> bool:
        """A synchronous REQUEST (DESIGN §3): the event type ends in ``Query``."""
        return self.event_type.endswith("Query")


def _name(meta: dict[str, Any], key: str) -> str:
    value = meta.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"Meta.{key} must be a non-empty string")
    if len(value) > MAX_NAME:
        raise InvalidRequest(f"Meta.{key} must be at most {MAX_NAME} characters")
    return check_text(value, f"Meta.{key}")


def _destinations(meta: dict[str, Any]) -> list[str] | None:
    value = meta.get("Destinations")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(d, dict) and isinstance(d.get("ID"), str) for d in value):
        raise InvalidRequest('Meta.Destinations must be a list of {"ID": "..."} objects')
    named = [check_text(d["ID"], "Meta.Destinations.ID") for d in value if d["ID"] != NIL_UUID]
    return named or None


def parse_data_model(body: Any) -> DataModelMeta:
    """Validate a ``POST /endpoint`` body (already JSON-decoded)."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    meta = body.get("Meta")
    if not isinstance(meta, dict):
        raise InvalidRequest("the body must have a Meta object")
    test = meta.get("Test", False)
    if not isinstance(test, bool):
        raise InvalidRequest("Meta.Test must be true or false")
    return DataModelMeta(_name(meta, "DataModel"), _name(meta, "EventType"), _destinations(meta), test, meta)


def parse_fhir_message(body: Any) -> str:
    """Validate a FHIR R4 message Bundle; returns the event code of its MessageHeader."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise InvalidRequest("the body must be a FHIR Bundle resource")
    if body.get("type") != "message":
        raise InvalidRequest("Bundle.type must be 'message'")
    entries = body.get("entry")
    first = (
        entries[0].get("resource") if isinstance(entries, list) and entries and isinstance(entries[0], dict) else None
    )
    if not isinstance(first, dict) or first.get("resourceType") != "MessageHeader":
        raise InvalidRequest("the first Bundle entry must be a MessageHeader")
    coding = first.get("eventCoding")
    code = coding.get("code") if isinstance(coding, dict) else None
    if not isinstance(code, str) or not code.strip() or len(code) > MAX_NAME:
        raise InvalidRequest("MessageHeader.eventCoding.code must be a non-empty string")
    return check_text(code, "MessageHeader.eventCoding.code")


def message_resource_types(bundle: dict[str, Any]) -> frozenset[str]:
    """The resource types a (validated) message Bundle carries besides its MessageHeader; the MessageHeader's
    own type when it carries nothing else (what a scope check of ``$process-message`` is about)."""
    types = {
        resource["resourceType"]
        for entry in bundle.get("entry", [])
        if isinstance(entry, dict)
        and isinstance(resource := entry.get("resource"), dict)
        and isinstance(resource.get("resourceType"), str)
    }
    types.discard("MessageHeader")
    return frozenset(types) or frozenset({"MessageHeader"})
