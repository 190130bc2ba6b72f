"""MLLP destinations (DESIGN §7): one HL7v2 message in flight per connection, the ACK checked against MSH-10.

``AA``/``CA`` = delivered; ``AE``/``CE`` = retry; ``AR``/``CR`` = final failure. Any connection problem or an
ACK for another message closes the connection (a fresh one is opened for the next try).

With ``tls`` the server certificate is verified against ``ca_pem`` (or the system CAs) and must name ``host``;
``cert_pem`` + ``key_pem`` are presented as the client certificate (PEM text stored in the destination: no file is
ever opened). A TLS failure (unknown CA, wrong name, a client certificate missing or refused, unusable material)
is a retry with a short detail, never an exception. The host is resolved and checked by the outbound guard, and
the connection goes to the address it checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import Mapping
from typing import Any

from healthway.delivery.senders import SEND_TIMEOUT, Message, Target
from healthway.domain import hl7
from healthway.domain.delivery_states import AttemptOutcome
from healthway.domain.hl7 import Ack, AckStatus
from healthway.domain.retry import AttemptResult
from healthway.errors import FrameTooLarge, MalformedHl7
from healthway.net.outbound import AddressRefused, OutboundGuard
from healthway.net.tls_material import TlsMaterialError, tls_context

LEGACY_FILE_FIELDS = ("ca_file", "cert_file", "key_file")  # paths of old configs the migration could not convert

MAX_ACK_BYTES = 1 << 20
READ_SIZE = 1 << 16
_OUTCOMES = {
    AckStatus.ACCEPT: AttemptOutcome.DELIVERED,
    AckStatus.ERROR: AttemptOutcome.FAILED,
    AckStatus.REJECT: AttemptOutcome.REJECTED,
}


def read_ack(answer: bytes) -> Ack | None:
    """The peer's ACK, or None when its answer is not one."""
    try:
        return hl7.parse_ack(answer)
    except MalformedHl7:
        return None


def control_id_of(payload: bytes) -> str | None:
    """MSH-10 of an HL7v2 message."""
    try:
        return hl7.parse_header(payload).control_id
    except MalformedHl7:
        return None


def ack_result(ack: Ack | None, control_id: str | None) -> AttemptResult:
    if ack is None:
        return AttemptResult.retry("the answer is not an HL7 ACK (no MSA segment)")
    if control_id is not None and ack.control_id != control_id:
        return AttemptResult.retry(f"ACK names control ID {ack.control_id[:40]!r}, not the one sent", ack.code)
    if ack.status is None:
        return AttemptResult.retry(f"unknown acknowledgment code {ack.code[:10]!r}", ack.code[:20])
    detail = f"MSA-1 {ack.code}" + (f": {ack.text}" if ack.text else "")
    return AttemptResult(_OUTCOMES[ack.status], ack.code, detail)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.answered = False  # whether the peer has sent any frame on this connection yet
        self.deframer = hl7.Deframer(MAX_ACK_BYTES)

    async def exchange(self, payload: bytes) -> bytes:
        self.writer.write(hl7.frame(payload))
        await self.writer.drain()
        answer = self.deframer.next_frame()  # a frame the peer sent unasked is taken as this answer (and mismatches)
        while answer is None:
            data = await self.reader.read(READ_SIZE)
            if not data:
                raise asyncio.IncompleteReadError(b"", None)
            answer = next(self.deframer.feed(data), None)
        self.answered = True
        return answer

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):  # the peer is gone already; nothing more to tidy
            await self.writer.wait_closed()


class MllpSender:
    """Keeps one connection per destination; a lock keeps one message in flight on it."""

    def __init__(self, *, guard: OutboundGuard, timeout: float = SEND_TIMEOUT) -> None:
        self._guard = guard
        self._timeout = timeout
        self._connections: dict[str, _Connection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}

    async def send(self, target: Target, message: Message) -> AttemptResult:
        control_id = message.control_id or control_id_of(message.payload)
        async with self._locks.setdefault(target.id, asyncio.Lock()):
            try:
                frame = await asyncio.wait_for(self._exchange(target, message.payload), self._timeout)
            except TimeoutError:
                await self._drop(target.id)
                return AttemptResult.retry("no ACK within the timeout")
            except (TlsFailure, AddressRefused) as exc:
                return AttemptResult.retry(str(exc))
            except ssl.SSLError as exc:  # after the handshake, e.g. TLS 1.3 servers refuse a client cert only here
                await self._drop(target.id)
                return AttemptResult.retry(f"TLS error: {_reason(exc)}")
            except (OSError, asyncio.IncompleteReadError, FrameTooLarge) as exc:
                detail = self._failure_detail(target, exc)
                await self._drop(target.id)
                return AttemptResult.retry(detail)
            result = ack_result(read_ack(frame), control_id)
            if result.outcome is AttemptOutcome.FAILED and result.response_code is None:
                await self._drop(target.id)  # out of step with the peer: start over on a fresh connection
            return result

    async def _exchange(self, target: Target, payload: bytes) -> bytes:
        connection = self._connections.get(target.id)
        if connection is None:
            connection = self._connections[target.id] = await self._connect(target)
        return await connection.exchange(payload)

    async def _connect(self, target: Target) -> _Connection:
        config = target.config
        host, port = str(config["host"]), int(config["port"])
        context = self._tls_context(config) if config.get("tls") else None
        address = (await self._guard.addresses(host, port))[0]  # the address checked is the one connected to
        try:
            reader, writer = await asyncio.open_connection(
                address, port, ssl=context, server_hostname=host if context else None, limit=MAX_ACK_BYTES
            )  # the certificate must name host (DNS or IP SAN)
        except ssl.SSLError as exc:
            raise TlsFailure(f"TLS handshake failed: {_reason(exc)}") from None
        return _Connection(reader, writer)

    def _tls_context(self, config: Mapping[str, Any]) -> ssl.SSLContext:
        """One context per set of PEM texts (keyed by their digest), made on first use."""
        if any(config.get(field) for field in LEGACY_FILE_FIELDS):
            raise TlsFailure("TLS setup failed: TLS files are no longer read; give ca_pem, cert_pem and key_pem")
        material = (config.get("ca_pem") or None, config.get("cert_pem") or None, config.get("key_pem") or None)
        key = hashlib.sha256(repr(material).encode()).hexdigest()
        if key not in self._contexts:
            self._contexts[key] = load_tls_context(*material)
        return self._contexts[key]

    def _failure_detail(self, target: Target, exc: Exception) -> str:
        connection = self._connections.get(target.id)
        hung_up = isinstance(exc, asyncio.IncompleteReadError | ConnectionError)
        if target.config.get("tls") and connection is not None and not connection.answered and hung_up:
            # TLS 1.3 servers check the client certificate after our side of the handshake is done, and their
            # alert is often lost to a reset: a hang-up before the first ACK is the sign we get.
            has_cert = target.config.get("cert_pem")
            hint = "did it refuse the client certificate?" if has_cert else "does it require a client certificate?"
            return f"TLS peer closed the connection before answering ({hint})"
        return f"connection failed: {type(exc).__name__}"

    async def _drop(self, target_id: str) -> None:
        if (connection := self._connections.pop(target_id, None)) is not None:
            await connection.close()

    async def aclose(self) -> None:
        for target_id in list(self._connections):
            await self._drop(target_id)


class TlsFailure(Exception):
    """A TLS problem described in a few words fit for an attempt's detail (no paths' contents, no key material)."""


def load_tls_context(ca_pem: str | None, cert_pem: str | None, key_pem: str | None) -> ssl.SSLContext:
    """The destination's TLS context from its stored PEM text. Raises ``TlsFailure``."""
    try:
        return tls_context(ca_pem, cert_pem, key_pem)
    except TlsMaterialError as exc:
        raise TlsFailure(f"TLS setup failed: {exc}") from None


def _reason(exc: BaseException) -> str:
    """``certificate verify failed (unable to get local issuer certificate)``, ``tlsv13 alert certificate
    required``, ``No such file or directory``: what went wrong, without OpenSSL's source locations."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        failed = "certificate verify failed"
        return f"{failed} ({exc.verify_message})" if exc.verify_message else failed
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
