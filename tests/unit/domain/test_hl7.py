"""domain/hl7.py: MLLP framing, the MSH header, ACKs and batch files. python-hl7 reads what we write, independently."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import hl7 as python_hl7
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthway.domain import hl7
from healthway.domain.hl7 import AckStatus, Deframer, ErrorCondition, Separators
from healthway.domain.messages import ContentType
from healthway.errors import FrameTooLarge, MalformedHl7

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7v2"
MESSAGES = ["adt_a01.hl7", "adt_a40_merge.hl7", "crlf_separators.hl7", "enhanced_ack_mode.hl7", "oru_r01.hl7",
            "utf8_msh18.hl7"]  # fmt: skip
PROPERTIES = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
MINUS_FIVE = timezone(timedelta(hours=-5))


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


# Payloads that may travel in a frame: any bytes but a start block and the end pair.
payloads = st.binary(max_size=300).filter(lambda b: not hl7.has_framing_bytes(b))
# Field text without separators or line breaks (what a control ID or an application name may be).
field_text = (
    st.text(st.characters(codec="utf-8", exclude_characters="|^~\\&\r\n"), min_size=1, max_size=30)
    .map(str.strip)
    .filter(bool)
)


# -- framing --------------------------------------------------------------------------------------------------


def deframe(stream: bytes, cuts: list[int], max_size: int = 1 << 20) -> list[bytes]:
    deframer, out, last = Deframer(max_size), [], 0
    for cut in [*sorted(cuts), len(stream)]:
        out += list(deframer.feed(stream[last:cut]))
        last = cut
    assert deframer.buffered == 0
    return out


@PROPERTIES
@given(st.lists(payloads, max_size=8))
def test_frame_then_deframe_gives_back_every_message(messages: list[bytes]) -> None:
    assert deframe(b"".join(hl7.frame(m) for m in messages), []) == messages


@PROPERTIES
@given(st.lists(payloads, max_size=6), st.data())
def test_any_chunking_of_the_stream_gives_the_same_messages(messages: list[bytes], data: st.DataObject) -> None:
    stream = b"\r\n".join(hl7.frame(m) for m in messages)  # noise between frames is dropped
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    assert deframe(stream, cuts) == messages


def test_the_end_bytes_split_across_reads_still_end_the_frame() -> None:
    deframer = Deframer(100)
    assert list(deframer.feed(b"\x0bMSH|a\x1c")) == []
    assert list(deframer.feed(b"\r")) == [b"MSH|a"]
    assert list(deframer.feed(b"\x0bb\x1cc\x1c\r")) == [b"b\x1cc"]  # a lone 0x1C is content


def test_frames_are_pulled_so_those_not_taken_stay_buffered() -> None:
    deframer = Deframer(100)
    first = next(deframer.feed(hl7.frame(b"one") + hl7.frame(b"two")))
    assert (first, deframer.next_frame(), deframer.next_frame()) == (b"one", b"two", None)


@PROPERTIES
@given(st.integers(1, 64), st.integers(1, 64), st.data())
def test_a_frame_over_the_limit_raises_and_the_stream_goes_on(limit: int, over: int, data: st.DataObject) -> None:
    big, after = b"M" * (limit + over), b"N" * limit
    stream = hl7.frame(b"A" * limit) + hl7.frame(big) + hl7.frame(after)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    deframer, got, refused = Deframer(limit), list[bytes](), list[FrameTooLarge]()
    for chunk in (stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)):
        pending = deframer.feed(chunk)
        while True:
            try:
                got.extend(frame for frame in pending)  # one at a time: those before a refusal are kept
                break
            except FrameTooLarge as exc:
                refused.append(exc)
                pending = deframer.feed(b"")
    assert got == [b"A" * limit, after]  # a frame of exactly the limit passes
    assert len(refused) == 1 and big.startswith(refused[0].head) and refused[0].head
    assert refused[0].message == f"the MLLP frame is larger than {limit} bytes"


def test_an_endless_frame_is_refused_once_it_passes_the_limit_not_when_it_ends() -> None:
    deframer = Deframer(10)
    assert list(deframer.feed(b"\x0b" + b"x" * 10)) == []
    with pytest.raises(FrameTooLarge):
        list(deframer.feed(b"y"))
    assert list(deframer.feed(b"z" * 1000)) == [] and deframer.buffered == 0  # skipped, not kept


def test_framing_bytes_and_the_hl7_sniff() -> None:
    assert hl7.frame(b"MSH|x") == b"\x0bMSH|x\x1c\r"
    assert hl7.has_framing_bytes(b"a\x0bb") and hl7.has_framing_bytes(b"a\x1c\rb")
    assert not hl7.has_framing_bytes(b"a\x1cb\r")
    assert hl7.looks_like_hl7v2(b"\r\nMSH|^~\\&|") and hl7.looks_like_hl7v2(b"MSH#*!@$")
    assert not hl7.looks_like_hl7v2(b"MSHA") and not hl7.looks_like_hl7v2(b"{}") and not hl7.looks_like_hl7v2(b"MS")


# -- the MSH header -------------------------------------------------------------------------------------------


def test_the_header_of_an_admission() -> None:
    header = hl7.parse_header(sample("adt_a01.hl7"))
    assert header.separators == Separators("|", "^", "~", "\\", "&")
    assert (header.sending_application, header.sending_facility) == ("NW_ADT", "NORTHWIND_GH")
    assert (header.receiving_application, header.receiving_facility) == ("HEALTHWAY", "HWGW")
    assert (header.message_type, header.structure, header.trigger_event) == ("ADT^A01", "ADT_A01", "A01")
    assert (header.control_id, header.processing_id, header.version) == ("HWS-A01-0001", "P", "2.5.1")
    assert (header.accept_ack_type, header.application_ack_type, header.charset) == (None, None, None)
    assert not header.enhanced_mode


def test_acknowledgment_types_and_charset() -> None:
    enhanced = hl7.parse_header(sample("enhanced_ack_mode.hl7"))
    assert (enhanced.accept_ack_type, enhanced.application_ack_type, enhanced.enhanced_mode) == ("AL", "NE", True)
    assert hl7.parse_header(sample("utf8_msh18.hl7")).charset == "UNICODE UTF-8"
    assert hl7.parse_header(sample("crlf_separators.hl7")).control_id == "HWS-A01-CRLF-0001"


@pytest.mark.parametrize("name", MESSAGES)
def test_the_header_agrees_with_python_hl7(name: str) -> None:
    ours = hl7.parse_header(sample(name))
    theirs = python_hl7.parse(sample(name).decode().replace("\r\n", "\r"))
    assert ours.control_id == theirs["MSH.F10"]
    assert ours.message_type == f"{theirs['MSH.F9.R1.C1']}^{theirs['MSH.F9.R1.C2']}"
    assert ours.separators.encoding_characters == theirs["MSH.F2"]


def test_other_separators_are_read_from_msh_1_and_msh_2() -> None:
    header = hl7.parse_header("MSH#*!@$#APP#FAC#GW#HOSP#2026##ORU*R01*ORU_R01#ID#P#2.5#\rPID#1\r")
    assert header.separators == Separators("#", "*", "!", "@", "$")
    assert (header.message_type, header.structure, header.control_id) == ("ORU^R01", "ORU_R01", "ID")
    short = hl7.parse_header("MSH|^~|A|F|R|RF|2026||ADT|C1")  # missing encoding characters take their defaults
    assert (short.separators.encoding_characters, short.message_type) == ("^~\\&", "ADT")


def test_a_header_without_a_control_id_or_a_truncated_body_still_parses() -> None:
    assert hl7.parse_header(sample("malformed/no_control_id.hl7")).control_id is None
    assert hl7.parse_header(sample("malformed/truncated.hl7")).control_id == "HWS-TRUNC-0001"


@pytest.mark.parametrize(
    "message",
    [sample("malformed/no_msh.hl7"), sample("malformed/bad_encoding_chars.hl7"), sample("malformed/not_hl7.bin"),
     b"", b"MSH", b"MSH|", b"MSH|^^\\&|A", b"MSHA^~\\&|A", b"MSH|^~\\&a|A", "MSH|^ \\&|SECRET-NAME"],
)  # fmt: skip
def test_a_malformed_header_raises_a_fixed_message(message: bytes | str) -> None:
    with pytest.raises(MalformedHl7) as raised:
        hl7.parse_header(message)
    assert raised.value.message in {
        "the message does not start with an MSH segment",
        "MSH-2 must hold the encoding characters",
        "MSH-1 and MSH-2 must be distinct separator characters",
    }


# -- acknowledgments ------------------------------------------------------------------------------------------


def test_an_original_mode_ack_is_the_sample_ack_byte_for_byte() -> None:
    header = hl7.parse_header(sample("adt_a01.hl7"))
    at = datetime(2025, 3, 14, 8, 30, 1, tzinfo=MINUS_FIVE)
    ack = hl7.build_ack(header, AckStatus.ACCEPT, control_id="HWS-ACK-0001", timestamp=at)
    assert ack == sample("ack_aa.hl7")


def test_enhanced_mode_answers_with_commit_codes() -> None:
    header = hl7.parse_header(sample("enhanced_ack_mode.hl7"))
    codes = [hl7.parse_ack(hl7.build_ack(header, status)) for status in AckStatus]
    assert [a.code for a in codes if a] == ["CA", "CE", "CR"]
    assert all(a and a.control_id == "HWS-ENH-0001" for a in codes)


def test_an_error_ack_carries_an_err_segment_that_python_hl7_reads() -> None:
    header = hl7.parse_header(sample("adt_a01.hl7"))
    text = "MSH-10 is empty | try again\r\nlater ^_^"
    ack = hl7.build_ack(header, AckStatus.REJECT, text=text, error=ErrorCondition.REQUIRED_FIELD_MISSING)
    theirs = python_hl7.parse(ack.decode())
    assert (theirs["MSA.F1"], theirs["MSA.F2"]) == ("AR", "HWS-A01-0001")
    assert theirs["MSA.F3"] == theirs["ERR.F8"] == "MSH-10 is empty | try again  later ^_^"  # unescaped by them
    assert (theirs["ERR.F3.R1.C1"], theirs["ERR.F3.R1.C2"], theirs["ERR.F4"]) == ("101", "Required field missing", "E")
    assert (theirs["MSH.F3"], theirs["MSH.F5"], theirs["MSH.F9.R1.C1"], theirs["MSH.F9.R1.C2"]) == (
        "HEALTHWAY",
        "NW_ADT",
        "ACK",
        "A01",
    )
    assert b"ERR" not in hl7.build_ack(header, AckStatus.ACCEPT)
    default = hl7.parse_ack(hl7.build_ack(header, AckStatus.ERROR))
    assert default is not None and (default.code, default.text) == ("AE", "Application error")


def test_a_message_without_a_header_is_still_answered() -> None:
    ack = hl7.parse_ack(hl7.build_ack(None, AckStatus.REJECT, text="not HL7v2"))
    assert ack is not None and (ack.code, ack.control_id, ack.text, ack.status) == ("AR", "", "not HL7v2", "R")


@PROPERTIES
@given(field_text, field_text, st.sampled_from(AckStatus), st.booleans())
def test_an_ack_parses_back_to_the_control_id_and_code(
    control_id: str, app: str, status: AckStatus, enhanced: bool
) -> None:
    msh_15 = "|||AL" if enhanced else ""
    header = hl7.parse_header(f"MSH|^~\\&|{app}|F|GW|H|20260101||ADT^A04|{control_id}|P|2.5.1{msh_15}\rPID|1\r")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    ack = hl7.parse_ack(hl7.build_ack(header, status, text=control_id, timestamp=at))
    assert ack is not None
    assert (ack.control_id, ack.code, ack.status, ack.text) == (
        header.control_id,
        ("C" if enhanced else "A") + status,
        status,
        header.control_id,
    )


def test_parse_ack_reads_err_text_when_msa_3_is_empty_and_returns_none_without_msa() -> None:
    v25 = "MSH|^~\\&|L|F|GW|H|2026||ACK|9|P|2.5\nMSA|ae|C1\nERR|||207^Application internal error^HL70357|E\n"
    assert hl7.parse_ack(v25) == hl7.Ack("AE", "C1", "Application internal error")
    v23 = "MSH|^~\\&|L|F|GW|H|2026||ACK|9|P|2.3\rMSA|AR|C1\rERR|PID^1^3^bad id\r"
    assert hl7.parse_ack(v23.encode()) == hl7.Ack("AR", "C1", "PID^1^3^bad id")
    unknown = hl7.parse_ack("MSH|^~\\&|L|F|GW|H|2026||ACK|9|P|2.5\rMSA|XX|C1\r")
    assert unknown is not None and unknown.status is None
    assert hl7.parse_ack("MSH|^~\\&|L|F|GW|H|2026||ACK|9|P|2.5\r") is None
    with pytest.raises(MalformedHl7):
        hl7.parse_ack(b"HTTP/1.1 200 OK\r\n")


# -- batch files ----------------------------------------------------------------------------------------------


def test_a_batch_file_splits_into_its_messages() -> None:
    messages = hl7.split_batch(sample("batch_fhs.hl7").decode())
    assert [hl7.parse_header(m).control_id for m in messages] == ["HWS-B-0001", "HWS-B-0002", "HWS-B-0003"]
    assert [hl7.parse_header(m).message_type for m in messages] == ["ADT^A04", "ORU^R01", "ADT^A08"]
    assert all(m.endswith("\r") and "BHS" not in m and "BTS" not in m for m in messages)
    assert messages[1].count("\r") == 5  # MSH PID PV1 OBR OBX


def test_a_file_without_batch_headers_is_one_message_unchanged() -> None:
    text = sample("crlf_separators.hl7").decode()
    assert hl7.split_batch(text) == [text]


def test_a_batch_with_segments_before_its_first_msh_is_malformed() -> None:
    with pytest.raises(MalformedHl7):
        hl7.split_batch("BHS|^~\\&\rPID|1|SECRET\rMSH|^~\\&|A\rBTS|1\r")
    assert hl7.split_batch("FHS|^~\\&\nBHS|^~\\&\nBTS|0\nFTS|1\n") == []


@PROPERTIES
@given(st.lists(st.lists(field_text, min_size=1, max_size=4), max_size=5), st.sampled_from(["\r", "\n", "\r\n"]))
def test_batch_split_undoes_a_batch_join(bodies: list[list[str]], newline: str) -> None:
    messages = [
        "\r".join([f"MSH|^~\\&|A|F|GW|H|2026||ADT^A01|C{n}|P|2.5", *(f"OBX|{v}" for v in body)]) + "\r"
        for n, body in enumerate(bodies)
    ]
    batch = f"FHS|^~\\&{newline}BHS|^~\\&{newline}" + "".join(messages) + f"BTS|{len(messages)}{newline}FTS|1"
    assert hl7.split_batch(batch.replace("\r", newline)) == messages


def test_content_types_are_read_whatever_their_parameters() -> None:
    assert ContentType.of("X-Application/HL7-V2+ER7; charset=utf-8") is ContentType.HL7V2
    assert ContentType.of("application/fhir+json") is ContentType.FHIR_JSON
    assert ContentType.of("application/xml") is None


def test_bytes_outside_frames_are_counted_as_discarded() -> None:
    deframer = Deframer(1000)
    assert list(deframer.feed(b"noise" + hl7.frame(b"MSH|a") + b"\r\n" + b"MSH|b\x1c\r")) == [b"MSH|a"]
    assert deframer.discarded == len(b"noise") + len(b"\r\nMSH|b\x1c\r")


@pytest.mark.parametrize(
    ("message", "terminator"),
    [(b"MSH|^~\\&|A\rPID|1\r", "\r"), (b"MSH|^~\\&|A\r\nPID|1\r\n", "\r\n"), (b"MSH|^~\\&|A\nPID|1\n", "\n")],
)
def test_an_ack_answers_with_the_message_segment_terminator(message: bytes, terminator: str) -> None:
    header = hl7.parse_header(message)
    ack = hl7.build_ack(header, AckStatus.ACCEPT, segment_end=hl7.segment_terminator(message)).decode()
    assert ack.count(terminator) == 2 and ack.endswith(terminator)
    assert terminator == "\r\n" or "\r\n" not in ack


def test_display_text_decodes_per_msh_18_and_never_fails() -> None:
    latin = "MSH|^~\\&|A|B|C|D|20250101||ADT^A01|1|P|2.5.1||||||8859/1\rPID|1||||Müller\r".encode("latin-1")
    assert "Müller" in hl7.display_text(latin) and "\n" in hl7.display_text(latin)
    utf8 = "MSH|^~\\&|A|B|C|D|20250101||ADT^A01|1|P|2.5.1||||||UNICODE UTF-8\rPID|1||||Zoë\r".encode()
    assert "Zoë" in hl7.display_text(utf8)
    ascii_but_utf8 = "MSH|^~\\&|A|B|C|D|20250101||ADT^A01|1|P|2.5.1\rPID|1||||Zoë\r".encode()
    assert "Zoë" in hl7.display_text(ascii_but_utf8)
    assert hl7.display_text(b"\xff\xfe not hl7") == "\ufffd\ufffd not hl7"
