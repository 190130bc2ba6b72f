"""HL7v2 on the wire (DESIGN §4, §5, §7): MLLP framing, the MSH header, ACKs and batch files. Pure: no I/O.

Everything Healthway knows about HL7v2's wire shape lives here; the MLLP sender, routing and (next) the MLLP and
SFTP listeners call these functions instead of slicing bytes themselves.

1. **Framing** (MLLP): ``0x0B`` message ``0x1C 0x0D``. ``frame`` wraps one message; a ``Deframer`` cuts a byte
   stream into messages on the end bytes only (never on a timeout), and refuses a frame over its size limit.
2. **Header**: ``parse_header`` reads the MSH segment: the separators (MSH-1, MSH-2), the message type and
   structure (MSH-9), the control ID (MSH-10), the acknowledgment types (MSH-15, MSH-16) and the charset (MSH-18).
3. **ACKs**: ``build_ack`` answers a header in original (``AA``/``AE``/``AR``) or enhanced mode (``CA``/``CE``/``CR``,
   when MSH-15 is valued); ``parse_ack`` reads a peer's answer (MSA-1, MSA-2, and its text).
4. **Batches**: ``split_batch`` cuts an FHS/BHS batch file into its messages.

Errors raised here carry fixed texts that echo nothing of the input (messages hold patient data).

python-hl7 (a test dependency) is not used at run time: its accessors unescape and truncate fields (MSH-3 ``A^B``
reads as ``A``) where an ACK must copy them verbatim, its ``escape`` writes non-ASCII as single-byte hex, and its
``split_file`` logs stray segments' content. The tests use it as an independent reader of what this module writes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from healthway.errors import FrameTooLarge, MalformedHl7

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\r"
FRAME_END = END_BLOCK + CARRIAGE_RETURN
SEGMENT_END = "\r"
HEAD_BYTES = 4096  # what a FrameTooLarge keeps of its frame: the MSH segment, to name the refused message
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BATCH_SEGMENTS = frozenset({"FHS", "BHS", "BTS", "FTS"})


# -- framing --------------------------------------------------------------------------------------------------


def frame(message: bytes) -> bytes:
    """One MLLP frame. The message must not hold the framing bytes (``has_framing_bytes``)."""
    return START_BLOCK + message + FRAME_END


def has_framing_bytes(message: bytes) -> bool:
    """Whether ``message`` would break its MLLP frame (a start block, or the end bytes, inside it)."""
    return START_BLOCK in message or FRAME_END in message


class Deframer:
    """Cuts an MLLP byte stream into messages, however the bytes arrive.

    ``feed(data)`` buffers ``data`` and yields each complete message; a message's frame ends only at ``0x1C 0x0D``
    (there is no timer here: a slow peer is the listener's idle-timeout business). Bytes outside frames (a stray
    newline between two) are dropped. A frame whose content passes ``max_size`` raises ``FrameTooLarge`` as soon as
    that is known; the rest of that frame is then skipped, and ``feed(b"")`` goes on with what followed it.
    Frames are pulled: the ones the caller does not take from the iterator stay buffered for the next call.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._scanned = 0  # where the search for the end bytes resumes (the buffer then starts with START_BLOCK)
        self._skipping = False  # inside a frame refused as too large
        self.discarded = 0  # bytes dropped from outside any frame (noise between frames), for a metric

    def feed(self, data: bytes) -> Iterator[bytes]:
        self._buffer += data
        return iter(self.next_frame, None)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as a message."""
        return len(self._buffer)

    def next_frame(self) -> bytes | None:
        """The next complete message, or None until more bytes arrive. Raises ``FrameTooLarge``."""
        if self._skipping and not self._skip_oversized():
            return None
        start = self._buffer.find(START_BLOCK)
        if start < 0:
            self.discarded += len(self._buffer)
            self._buffer.clear()
            return None
        if start:
            self.discarded += start
            del self._buffer[:start]
            self._scanned = 0
        end = self._buffer.find(FRAME_END, max(self._scanned, 1))
        if end < 0:
            self._scanned = max(len(self._buffer) - len(END_BLOCK), 1)  # the end bytes may arrive split
            if len(self._buffer) - 1 - self._buffer.endswith(END_BLOCK) > self.max_size:
                self._refuse_incomplete()
            return None
        message = bytes(self._buffer[1:end])
        del self._buffer[: end + len(FRAME_END)]
        self._scanned = 0
        if len(message) > self.max_size:
            raise FrameTooLarge(self.max_size, message[:HEAD_BYTES])
        return message

    def _refuse_incomplete(self) -> None:
        content = len(self._buffer) - self._buffer.endswith(END_BLOCK)
        head = bytes(self._buffer[1 : min(content, 1 + HEAD_BYTES)])
        self._keep_possible_end()
        self._skipping, self._scanned = True, 0
        raise FrameTooLarge(self.max_size, head)

    def _skip_oversized(self) -> bool:
        """Drop the refused frame's bytes; True once its end has gone by."""
        end = self._buffer.find(FRAME_END)
        if end < 0:
            self._keep_possible_end()
            return False
        del self._buffer[: end + len(FRAME_END)]
        self._skipping = False
        return True

    def _keep_possible_end(self) -> None:
        """Clear the buffer but for a trailing ``0x1C`` whose ``0x0D`` is still on its way."""
        del self._buffer[: len(self._buffer) - self._buffer.endswith(END_BLOCK)]


def segment_terminator(message: bytes) -> str:
    """How the message ends its first segment: ``\r`` (the standard), or ``\r\n`` / ``\n`` as some senders write;
    an ACK answers in kind."""
    head = message[:HEAD_BYTES]
    end = head.find(b"\r")
    if end >= 0:
        return "\r\n" if head[end + 1 : end + 2] == b"\n" else "\r"
    return "\n" if b"\n" in head else SEGMENT_END


_CHARSETS = {"": "ascii", "ASCII": "ascii", "8859/1": "latin-1", "8859/15": "iso8859-15", "UNICODE UTF-8": "utf-8"}


def display_text(message: bytes) -> str:
    """The message as text for people, decoded per its MSH-18 (ASCII when empty, ISO 8859-1, UTF-8; others read
    as UTF-8), one segment per line. Only for display: the stored bytes stay as received. Undecodable bytes are
    shown as U+FFFD (a sender whose MSH-18 says ASCII and sends UTF-8 is common: ASCII falls back to UTF-8)."""
    try:
        charset = (parse_header(message).charset or "").upper()
    except MalformedHl7:
        charset = "UNICODE UTF-8"
    codec = _CHARSETS.get(charset, "utf-8")
    text = message.decode("utf-8" if codec == "ascii" else codec, errors="replace")
    return "\n".join(_LINE_BREAK.split(text.rstrip("\r\n")))


def looks_like_hl7v2(payload: bytes) -> bool:
    """A cheap sniff: the payload starts with an MSH segment (a full check is ``parse_header``)."""
    head = payload.lstrip()[:4]
    return len(head) == 4 and head[:3] == b"MSH" and not (chr(head[3]).isalnum() or chr(head[3]).isspace())


# -- the MSH header -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Separators:
    """MSH-1 and MSH-2 (HL7v2 §2.5.4). ``truncation`` is the fifth encoding character of v2.7+, when present."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as written."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


@dataclass(frozen=True)
class Header:
    """What Healthway reads from an MSH segment. Fields are as written (escape sequences left in place), so that
    an ACK can copy them back unchanged; absent optional fields are None."""

    separators: Separators
    sending_application: str  # MSH-3
    sending_facility: str  # MSH-4
    receiving_application: str  # MSH-5
    receiving_facility: str  # MSH-6
    message_type: str | None  # MSH-9.1 and 9.2 joined by ``^`` whatever the separators: ``ADT^A01``
    structure: str | None  # MSH-9.3, e.g. ``ADT_A01`` (optional in HL7v2)
    control_id: str | None  # MSH-10
    processing_id: str  # MSH-11
    version: str  # MSH-12
    accept_ack_type: str | None  # MSH-15: AL, NE, ER, SU; valued means enhanced acknowledgment mode
    application_ack_type: str | None  # MSH-16
    charset: str | None  # MSH-18, e.g. ``UNICODE UTF-8``

    @property
    def enhanced_mode(self) -> bool:
        """DESIGN §4: enhanced acknowledgment (commit ACKs ``CA``/``CE``/``CR``) when MSH-15 asks for it."""
        return self.accept_ack_type is not None

    @property
    def trigger_event(self) -> str | None:
        """MSH-9.2, e.g. ``A01``."""
        parts = (self.message_type or "").split("^")
        return parts[1] if len(parts) > 1 and parts[1] else None


def parse_header(message: bytes | str) -> Header:
    """The MSH header of an HL7v2 message (only its first segment is read). Raises ``MalformedHl7``."""
    segment = _first_segment(message)
    if len(segment) < 4 or segment[:3] != "MSH":
        raise MalformedHl7("the message does not start with an MSH segment")
    separators = _separators(segment[3], segment[4:].split(segment[3], maxsplit=1)[0])
    fields = [*segment.split(separators.field), *[""] * 18]  # fields[n - 1] is MSH-n: MSH-1 is the separator itself
    type_parts = [*fields[8].strip().split(separators.component), "", "", ""]
    return Header(
        separators=separators,
        sending_application=fields[2],
        sending_facility=fields[3],
        receiving_application=fields[4],
        receiving_facility=fields[5],
        message_type="^".join(p.strip() for p in type_parts[:2] if p.strip()) or None,
        structure=type_parts[2].strip() or None,
        control_id=fields[9].strip() or None,
        processing_id=fields[10].strip(),
        version=fields[11].strip(),
        accept_ack_type=fields[14].strip().upper() or None,
        application_ack_type=fields[15].strip().upper() or None,
        charset=fields[17].strip() or None,
    )


def _first_segment(message: bytes | str) -> str:
    if isinstance(message, bytes):
        head = message.lstrip()[:HEAD_BYTES]
        message = head.decode("utf-8", errors="replace")  # the MSH segment is ASCII in practice, whatever MSH-18 says
    return _LINE_BREAK.split(message.lstrip(), maxsplit=1)[0]


_DEFAULT = Separators()


def _separators(field: str, encoding: str) -> Separators:
    """MSH-1 and MSH-2. Missing trailing encoding characters take their defaults, as receivers commonly allow."""
    if not 1 <= len(encoding) <= 5:
        raise MalformedHl7("MSH-2 must hold the encoding characters")
    filled = encoding + _DEFAULT.encoding_characters[len(encoding) :]
    characters = field + filled
    if len(set(characters)) != len(characters) or any(c.isalnum() or c.isspace() for c in characters):
        raise MalformedHl7("MSH-1 and MSH-2 must be distinct separator characters")
    return Separators(field, filled[0], filled[1], filled[2], filled[3], filled[4:])


# -- acknowledgments ------------------------------------------------------------------------------------------


class AckStatus(StrEnum):
    """What an ACK says, whatever the mode: the second letter of its MSA-1 code (HL7 table 0008)."""

    ACCEPT = "A"
    ERROR = "E"  # the sender should try again
    REJECT = "R"  # the sender must not try again


ACK_CODES = frozenset(mode + status for mode in "AC" for status in AckStatus)  # AA AE AR CA CE CR


class ErrorCondition(StrEnum):
    """HL7 table 0357 (message error condition codes), for ERR-3."""

    SEGMENT_SEQUENCE = "100"
    REQUIRED_FIELD_MISSING = "101"
    DATA_TYPE = "102"
    TABLE_VALUE_NOT_FOUND = "103"
    UNSUPPORTED_MESSAGE_TYPE = "200"
    UNSUPPORTED_EVENT = "201"
    UNSUPPORTED_PROCESSING_ID = "202"
    UNSUPPORTED_VERSION = "203"
    UNKNOWN_KEY = "204"
    DUPLICATE_KEY = "205"
    RECORD_LOCKED = "206"
    APPLICATION_ERROR = "207"

    @property
    def text(self) -> str:
        return self.name.replace("_", " ").capitalize()


@dataclass(frozen=True)
class Ack:
    code: str  # MSA-1, upper case as received (any value: the caller decides what an unknown code means)
    control_id: str  # MSA-2: the acknowledged message's MSH-10
    text: str  # MSA-3, else the ERR segment's message; shortened

    @property
    def status(self) -> AckStatus | None:
        return AckStatus(self.code[1]) if self.code in ACK_CODES else None


MAX_ACK_TEXT = 200


def build_ack(
    header: Header | None,
    code: AckStatus,
    *,
    text: str | None = None,
    error: ErrorCondition | None = None,
    control_id: str | None = None,
    timestamp: datetime | None = None,
    segment_end: str = SEGMENT_END,
) -> bytes:
    """The ACK answering ``header`` (None: a message too broken to have one), UTF-8.

    MSA-1 is ``A`` + ``code`` in original mode and ``C`` + ``code`` in enhanced mode (DESIGN §4); MSA-2 is the
    original MSH-10. The ACK's MSH swaps the sending and receiving application and facility and uses the message's
    own separators. An error or reject carries an ERR segment (``error``, by default 207 application error);
    ``text`` goes into MSA-3 and ERR-8. ``control_id`` (MSH-10 of the ACK) and ``timestamp`` (MSH-7) default to
    a fresh random ID and the current time; ``segment_end`` is the message's own (``segment_terminator``).
    """
    separators = header.separators if header else _DEFAULT
    mode = "C" if header and header.enhanced_mode else "A"
    escaped = _escape(text, separators)[:MAX_ACK_TEXT] if text else ""
    segments = [
        _ack_msh(header, separators, control_id or uuid.uuid4().hex[:20], timestamp or datetime.now(UTC)),
        ["MSA", mode + code, (header.control_id or "") if header else "", escaped],
    ]
    if code is not AckStatus.ACCEPT:
        condition = error or ErrorCondition.APPLICATION_ERROR
        c = separators.component
        segments.append(["ERR", "", "", f"{condition}{c}{condition.text}{c}HL70357", "E", "", "", "", escaped])
    return "".join(separators.field.join(s).rstrip(separators.field) + segment_end for s in segments).encode()


def _ack_msh(header: Header | None, separators: Separators, control_id: str, timestamp: datetime) -> list[str]:
    c = separators.component
    trigger = header.trigger_event if header else None
    return [
        "MSH",
        separators.encoding_characters,
        header.receiving_application if header else "",
        header.receiving_facility if header else "",
        header.sending_application if header else "",
        header.sending_facility if header else "",
        timestamp.strftime("%Y%m%d%H%M%S%z"),
        "",
        f"ACK{c}{trigger}{c}ACK" if trigger else "ACK",
        control_id,
        header.processing_id if header else "P",
        header.version if header else "2.5.1",
    ]


def _escape(text: str, separators: Separators) -> str:
    """HL7v2 §2.7.4: each separator written as its escape sequence; line breaks become spaces (a segment ends at
    a carriage return)."""
    e = separators.escape
    table: dict[str, str | int | None] = {
        e: f"{e}E{e}",
        separators.field: f"{e}F{e}",
        separators.component: f"{e}S{e}",
        separators.subcomponent: f"{e}T{e}",
        separators.repetition: f"{e}R{e}",
        "\r": " ",
        "\n": " ",
    }
    return text.translate(str.maketrans(table))


def parse_ack(message: bytes | str) -> Ack | None:
    """The acknowledgment in a peer's answer; None when it has no MSA segment. Raises ``MalformedHl7`` when the
    answer is not HL7v2 at all."""
    separators = parse_header(message).separators
    text = message.decode("utf-8", errors="replace") if isinstance(message, bytes) else message
    segments = {}
    for segment in _LINE_BREAK.split(text):
        name = segment[:3]
        if name in ("MSA", "ERR") and name not in segments:
            segments[name] = segment.split(separators.field) + [""] * 9
    if "MSA" not in segments:
        return None
    msa, err = segments["MSA"], segments.get("ERR")
    said = msa[3].strip() or (_error_text(err, separators) if err else "")
    return Ack(msa[1].strip().upper(), msa[2].strip(), said[:MAX_ACK_TEXT])


def _error_text(err: list[str], separators: Separators) -> str:
    """ERR-8 (user message), else ERR-3.2 (the error code's text), else ERR-1 (v2.3's code and location)."""
    condition = [*err[3].split(separators.component), ""]
    return err[8].strip() or condition[1].strip() or err[1].strip()


# -- batch files ----------------------------------------------------------------------------------------------


def split_batch(text: str) -> list[str]:
    """The messages of an HL7 batch file (FHS/BHS ... BTS/FTS, DESIGN §5), each ending with a carriage return.

    A file that does not start with FHS or BHS is one message, returned unchanged. Segments may end with CR, LF
    or CRLF. Raises ``MalformedHl7`` when a batch has segments before its first MSH.
    """
    if text.lstrip()[:3] not in ("FHS", "BHS"):
        return [text]
    messages: list[list[str]] = []
    for segment in _LINE_BREAK.split(text):
        if not segment.strip() or segment[:3] in _BATCH_SEGMENTS:
            continue
        if segment[:3] == "MSH":
            messages.append([])
        elif not messages:
            raise MalformedHl7("a batch file has segments before its first MSH segment")
        messages[-1].append(segment)
    return [SEGMENT_END.join(segments) + SEGMENT_END for segments in messages]
