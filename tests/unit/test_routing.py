"""Routing filters and what each destination kind can carry."""

from __future__ import annotations

import pytest

from healthway.domain.routing import Filters, MessageFacts, carry_problem, matches, message_type_matches

ADT = b"MSH|^~\\&|EHR|H|GW|H|202601010000||ADT^A01|MSG1|P|2.5\rPID|1||42\r"


@pytest.mark.parametrize(
    ("pattern", "message_type", "expected"),
    [
        ("ADT^A01", "ADT^A01", True),
        ("ADT^A01", "ADT^A01^ADT_A01", True),
        ("adt^a01", "ADT^A01", True),
        ("ADT^A01", "ADT^A04", False),
        ("ADT^*", "ADT^A08", True),
        ("ADT^*", "ORU^R01", False),
        ("*", "ORU^R01", True),
        ("ADT^A01", "ADT", False),
    ],
)
def test_message_type_patterns(pattern: str, message_type: str, expected: bool) -> None:
    assert message_type_matches(pattern, message_type) is expected


def test_empty_filters_match_everything_and_set_filters_must_all_pass() -> None:
    facts = MessageFacts(data_model="PatientAdmin", event_type="Arrival", message_type=None)
    assert matches(Filters(), facts)
    assert matches(Filters(data_models=["patientadmin", "Results"]), facts)
    assert not matches(Filters(data_models=["Results"]), facts)
    assert not matches(Filters(data_models=["PatientAdmin"], event_types=["Discharge"]), facts)
    assert not matches(Filters(message_types=["ADT^*"]), facts)  # JSON has no MSH-9
    hl7 = MessageFacts(data_model=None, event_type=None, message_type="ADT^A01")
    assert matches(Filters(message_types=["ORU^R01", "ADT^*"]), hl7)
    assert not matches(Filters(data_models=["PatientAdmin"]), hl7)


def test_json_cannot_go_to_mllp_but_hl7_can() -> None:
    problem = carry_problem("mllp", "application/json", b"{}")
    assert problem is not None and "HL7v2 only" in problem
    assert carry_problem("mllp", "x-application/hl7-v2+er7", ADT) is None
    assert carry_problem("mllp", "text/plain", ADT) is None  # recognised by its MSH segment
    assert carry_problem("mllp", "x-application/hl7-v2+er7", ADT + b"\x1c\r") is not None
    assert carry_problem("webhook", "application/octet-stream", b"\x00\x01") is None
    assert carry_problem("sftp", "application/json", b"{}") is None
    assert carry_problem("fhir", "x-application/hl7-v2+er7", ADT) is not None
