"""MLLP destinations (DESIGN §7): one HL7v2 message in flight per connection, the ACK checked against MSH-10.

``AA``/``CA`` = delivered; ``AE``/``CE`` = retry; ``AR``/``CR`` = final failure. Any connection problem or an
ACK for another message closes the connection (a fresh one is opened for the next try).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from healthway.delivery.senders import SEND_TIMEOUT, Message, Target
from healthway.domain.retry import AttemptResult, Outcome

START, END = b"\x0b", b"\x1c\x0d"
MAX_ACK_BYTES = 1 << 20
_ACK_OUTCOMES = {
    "AA": Outcome.DELIVERED,
    "CA": Outcome.DELIVERED,
    "AE": Outcome.RETRY,
    "CE": Outcome.RETRY,
    "AR": Outcome.REJECTED,
    "CR": Outcome.REJECTED,
}


@dataclass(frozen=True)
class Ack:
    code: str  # MSA-1
    control_id: str  # MSA-2
    text: str  # MSA-3 or ERR, shortened


def parse_ack(frame: bytes) -> Ack | None:
    """The MSA segment of an ACK, or None when there is none."""
    text = frame.decode("utf-8", errors="replace")
    segments = [s for s in text.replace("\n", "\r").split("\r") if s]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 4:
        return None
    separator = segments[0][3]
    for segment in segments:
        fields = segment.split(separator)
        if fields[0] == "MSA":
            fields += [""] * 4
            return Ack(fields[1].strip().upper(), fields[2].strip(), fields[3].strip()[:200])
    return None


def control_id_of(payload: bytes) -> str | None:
    """MSH-10 of an HL7v2 message."""
    first = payload.lstrip().split(b"\r", 1)[0].split(b"\n", 1)[0].decode("utf-8", errors="replace")
    if not first.startswith("MSH") or len(first) < 4:
        return None
    fields = first.split(first[3])
    return fields[9].strip() if len(fields) > 9 else None  # MSH-1 is the separator itself, so MSH-10 is [9]


def ack_result(ack: Ack | None, control_id: str | None) -> AttemptResult:
    if ack is None:
        return AttemptResult.retry("the answer is not an HL7 ACK (no MSA segment)")
    if control_id is not None and ack.control_id != control_id:
        return AttemptResult.retry(f"ACK names control ID {ack.control_id[:40]!r}, not the one sent", ack.code)
    outcome = _ACK_OUTCOMES.get(ack.code)
    if outcome is None:
        return AttemptResult.retry(f"unknown acknowledgment code {ack.code[:10]!r}", ack.code[:20])
    return AttemptResult(outcome, ack.code, f"MSA-1 {ack.code}" + (f": {ack.text}" if ack.text else ""))


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, payload: bytes) -> bytes:
        self.writer.write(START + payload + END)
        await self.writer.drain()
        frame = await self.reader.readuntil(END)
        return frame[frame.find(START) + 1 : -len(END)]

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):  # the peer is gone already; nothing more to tidy
            await self.writer.wait_closed()


class MllpSender:
    """Keeps one connection per destination; a lock keeps one message in flight on it."""

    def __init__(self, *, timeout: float = SEND_TIMEOUT) -> None:
        self._timeout = timeout
        self._connections: dict[str, _Connection] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def send(self, target: Target, message: Message) -> AttemptResult:
        control_id = message.control_id or control_id_of(message.payload)
        async with self._locks.setdefault(target.id, asyncio.Lock()):
            try:
                frame = await asyncio.wait_for(self._exchange(target, message.payload), self._timeout)
            except TimeoutError:
                await self._drop(target.id)
                return AttemptResult.retry("no ACK within the timeout")
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError) as exc:
                await self._drop(target.id)
                return AttemptResult.retry(f"connection failed: {type(exc).__name__}")
            result = ack_result(parse_ack(frame), control_id)
            if result.outcome is Outcome.RETRY and result.response_code is None:
                await self._drop(target.id)  # out of step with the peer: start over on a fresh connection
            return result

    async def _exchange(self, target: Target, payload: bytes) -> bytes:
        connection = self._connections.get(target.id)
        if connection is None:
            connection = self._connections[target.id] = await self._connect(target)
        return await connection.exchange(payload)

    async def _connect(self, target: Target) -> _Connection:
        config = target.config
        context = _tls_context(config) if config.get("tls") else None
        reader, writer = await asyncio.open_connection(
            config["host"], int(config["port"]), ssl=context, limit=MAX_ACK_BYTES
        )
        return _Connection(reader, writer)

    async def _drop(self, target_id: str) -> None:
        if (connection := self._connections.pop(target_id, None)) is not None:
            await connection.close()

    async def aclose(self) -> None:
        for target_id in list(self._connections):
            await self._drop(target_id)


def _tls_context(config: Mapping[str, Any]) -> ssl.SSLContext:
    """Verify the server against the system CAs, or the destination's own CA; optionally present a client cert."""
    context = ssl.create_default_context(cafile=config.get("ca_file") or None)
    if config.get("cert_file"):
        context.load_cert_chain(config["cert_file"], config.get("key_file") or None)
    return context
