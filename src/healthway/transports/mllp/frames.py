"""One MLLP frame → one intake submission → one ACK (DESIGN §4).

The header is read with a cheap split (``hl7.parse_header``), never a full parse, before the commit. Errors are
answered in the message's own terms: ``AR`` (reject: resending the same bytes can never work) for a frame that
is not HL7v2, has no MSH-10 or is too large; ``AE`` (error: try again) when the commit failed. Either way nothing
is routed, and the ACK's text is one of the fixed texts here: it echoes nothing of the message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

import structlog

from healthway.domain import hl7
from healthway.domain.hl7 import AckStatus, ErrorCondition, Header
from healthway.domain.messages import ContentType
from healthway.errors import FrameTooLarge, HealthwayError, MalformedHl7
from healthway.runtime import Clock
from healthway.services.intake import Receipt, Submission

log = structlog.get_logger("healthway.mllp")
Accept = Callable[[Submission], Awaitable[Receipt]]


@dataclass(frozen=True)
class Sender:
    """The source a connection speaks for, and where it connects from (for the log's metadata)."""

    source_id: str
    environment_id: str
    address: str


def submission(sender: Sender, message: bytes, header: Header, clock: Clock) -> Submission:
    """The intake submission for one HL7v2 message: raw bytes as received, MSH-9 and MSH-10 as metadata, and
    MSH-10 as the duplicate key (DESIGN §2: same source + MSH-10 within 24 h)."""
    return Submission(
        source_id=sender.source_id,
        environment_id=sender.environment_id,
        transport="mllp",
        content_type=ContentType.HL7V2,
        payload=message,
        received_at=clock(),
        message_type=header.message_type,
        event_type=header.trigger_event,
        control_id=header.control_id,
        dedup_key=header.control_id,
        test=header.processing_id[:1] == "T",
        meta={"peer": sender.address, "charset": header.charset},
    )


class Reply(NamedTuple):
    status: AckStatus
    ack: bytes  # the whole ACK message, unframed


class FrameHandler:
    """Answers each frame with the bytes of its ACK, after the message is durable."""

    def __init__(self, accept: Accept, clock: Clock) -> None:
        self._accept = accept
        self._clock = clock

    async def handle(self, sender: Sender, message: bytes) -> Reply:
        end = hl7.segment_terminator(message)
        try:
            header = hl7.parse_header(message)
        except MalformedHl7:
            return _reply(None, AckStatus.REJECT, end, "not an HL7v2 message")
        if header.control_id is None:
            return _reply(header, AckStatus.REJECT, end, NO_CONTROL_ID, ErrorCondition.REQUIRED_FIELD_MISSING)
        try:
            await self._accept(submission(sender, message, header, self._clock))
        except HealthwayError as exc:
            log.warning("mllp message not stored", source_id=sender.source_id, error=exc.code)
            return _reply(header, AckStatus.ERROR, end, "the message could not be stored; send it again")
        return _reply(header, AckStatus.ACCEPT, end)

    @staticmethod
    def too_large(refused: FrameTooLarge) -> Reply:
        """The reject of a frame over the size limit, naming it by its MSH-10 when its head holds one."""
        try:
            header: Header | None = hl7.parse_header(refused.head)
        except MalformedHl7:
            header = None
        text = f"the message is larger than {refused.limit} bytes"
        return _reply(header, AckStatus.REJECT, hl7.segment_terminator(refused.head), text)


NO_CONTROL_ID = "MSH-10 (message control ID) is empty"


def _reply(
    header: Header | None,
    status: AckStatus,
    segment_end: str,
    text: str | None = None,
    error: ErrorCondition | None = None,
) -> Reply:
    return Reply(status, hl7.build_ack(header, status, text=text, error=error, segment_end=segment_end))
