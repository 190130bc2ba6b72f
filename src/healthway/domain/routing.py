"""Routing rules: which subscriptions a message matches, and which content a destination kind can carry.

Pure functions over plain values; the services feed them rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from healthway.domain import hl7
from healthway.domain.messages import ContentType


class DestinationKind(StrEnum):
    WEBHOOK = "webhook"
    MLLP = "mllp"
    SFTP = "sftp"
    FHIR = "fhir"


class Ordering(StrEnum):
    FIFO = "fifo"  # a message waits until every earlier one of its subscription is delivered or given up
    PARALLEL = "parallel"  # each message on its own; a failing one never holds back the others


@dataclass(frozen=True)
class Filters:
    """A subscription's filters. An empty list matches everything; several values match any of them."""

    data_models: Sequence[str] = ()
    event_types: Sequence[str] = ()
    message_types: Sequence[str] = ()


@dataclass(frozen=True)
class MessageFacts:
    """What routing looks at in a log."""

    data_model: str | None
    event_type: str | None
    message_type: str | None  # HL7v2 MSH-9, e.g. ``ADT^A01`` or ``ADT^A01^ADT_A01``


def message_type_matches(pattern: str, message_type: str) -> bool:
    """``ADT^A01`` matches ``ADT^A01`` and ``ADT^A01^ADT_A01``; ``ADT^*`` matches any ADT event; ``*`` anything.

    Only the pattern's components are compared (the message structure, MSH-9.3, is optional in HL7v2).
    """
    wanted = pattern.strip().upper().split("^")
    actual = message_type.strip().upper().split("^")
    if len(actual) < len(wanted) and wanted[len(actual) :] != ["*"]:
        return False
    return all(w in ("*", a) for w, a in zip(wanted, actual, strict=False))


LIKE_ESCAPE = "\\"


def message_type_like(pattern: str) -> str:
    """``message_type_matches`` as a SQL LIKE pattern (escape character ``LIKE_ESCAPE``) over stored message types
    (``ADT^A01``): ``ADT^*`` → ``ADT^%``; a pattern of one component matches that type with any event."""
    wanted = pattern.strip().upper().split("^")
    if len(wanted) == 1 and wanted != ["*"]:
        wanted.append("*")

    def literal(part: str) -> str:
        return part.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

    return "^".join("%" if part == "*" else literal(part) for part in wanted)


def _in(value: str | None, allowed: Sequence[str]) -> bool:
    if not allowed:
        return True
    return value is not None and value.casefold() in {a.casefold() for a in allowed}


def matches(filters: Filters, facts: MessageFacts) -> bool:
    """True when the message passes every non-empty filter."""
    if not _in(facts.data_model, filters.data_models) or not _in(facts.event_type, filters.event_types):
        return False
    if not filters.message_types:
        return True
    mt = facts.message_type
    return mt is not None and any(message_type_matches(p, mt) for p in filters.message_types)


def is_hl7v2(content_type: str, payload: bytes) -> bool:
    return ContentType.of(content_type) is ContentType.HL7V2 or hl7.looks_like_hl7v2(payload)


def carry_problem(kind: str, content_type: str, payload: bytes) -> str | None:
    """Why a destination of ``kind`` cannot carry this content (the delivery is then ``filtered``), or None."""
    if kind == DestinationKind.MLLP and not is_hl7v2(content_type, payload):
        return f"an MLLP destination carries HL7v2 only, not {content_type.split(';', maxsplit=1)[0].strip()}"
    if kind == DestinationKind.MLLP and hl7.has_framing_bytes(payload):
        return "the message contains MLLP framing bytes"
    if kind == DestinationKind.FHIR and "json" not in content_type.lower():
        return f"a FHIR destination carries FHIR JSON only, not {content_type.split(';', maxsplit=1)[0].strip()}"
    return None
