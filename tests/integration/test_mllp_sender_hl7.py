"""The MLLP sender reads its peer's answers through domain/hl7.py: over a real loopback socket, an ACK dribbled out
a few bytes at a time, an error ACK's ERR text, and an answer too large to be an ACK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from healthway.delivery.senders import Target
from healthway.delivery.senders import mllp as mllp_module
from healthway.delivery.senders.mllp import MllpSender
from healthway.domain import hl7
from healthway.domain.delivery_states import AttemptOutcome
from healthway.domain.hl7 import AckStatus, ErrorCondition
from healthway.domain.retry import AttemptResult
from healthway.testing import loopback_guard
from tests.integration.test_delivery_senders import hl7_message

Answer = Callable[[bytes], list[bytes]]  # the message received -> the chunks written back


@asynccontextmanager
async def raw_peer(answer: Answer) -> AsyncIterator[int]:
    """A bare asyncio MLLP peer (framing by domain/hl7.py) that writes its answer in the given chunks."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        deframer = hl7.Deframer(1 << 20)
        while data := await reader.read(4096):
            for message in deframer.feed(data):
                for chunk in answer(message):
                    writer.write(chunk)
                    await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def send(answer: Answer) -> AttemptResult:
    async def go() -> AttemptResult:
        async with raw_peer(answer) as port:
            sender = MllpSender(guard=loopback_guard(), timeout=5)
            try:
                return await sender.send(Target("m", "mllp", {"host": "127.0.0.1", "port": port}), hl7_message("C1"))
            finally:
                await sender.aclose()

    return asyncio.run(go())


def test_an_ack_written_a_few_bytes_at_a_time_after_noise_is_read_whole() -> None:
    def answer(message: bytes) -> list[bytes]:
        wire = b"\r\n" + hl7.frame(hl7.build_ack(hl7.parse_header(message), AckStatus.ACCEPT))
        return [wire[i : i + 3] for i in range(0, len(wire), 3)]

    result = send(answer)
    assert (result.outcome, result.response_code, result.detail) == (AttemptOutcome.DELIVERED, "AA", "MSA-1 AA")


def test_an_error_acks_err_text_reaches_the_attempt_detail() -> None:
    def answer(message: bytes) -> list[bytes]:
        header = hl7.parse_header(message)
        return [hl7.frame(hl7.build_ack(header, AckStatus.REJECT, error=ErrorCondition.UNSUPPORTED_EVENT))]

    result = send(answer)
    assert (result.outcome, result.detail) == (AttemptOutcome.REJECTED, "MSA-1 AR: Unsupported event")


def test_an_answer_over_the_ack_limit_is_a_retry_not_a_buffer_without_end() -> None:
    big = b"\x0b" + b"x" * (mllp_module.MAX_ACK_BYTES + 1)  # and no end bytes: the limit alone must stop it
    result = send(lambda _message: [big])
    assert result.outcome is AttemptOutcome.FAILED and result.detail == "connection failed: FrameTooLarge"
