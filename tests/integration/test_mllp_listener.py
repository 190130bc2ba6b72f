"""The MLLP listener in process, on SQLite and PostgreSQL, against independent peers: python-hl7's ``MLLPClient``
and ``mllp_send`` command, and raw sockets for framing abuse.

Each test runs a real node (``app.build``: group committer, delivery worker...) with ``build_listener`` on a
loopback socket, in an event loop on a background thread; the peers talk to it over TCP. A source owns the peer
127.0.0.1/32, so connections from 127.0.0.2 and 127.0.0.3 (loopback too, on Linux) come from no source's network.
"""

from __future__ import annotations

import asyncio
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hl7
import hl7.client
import pytest
import sqlalchemy as sa

from healthway import server
from healthway.app import build
from healthway.delivery.senders import Message, Target
from healthway.delivery.senders.mllp import MllpSender
from healthway.domain.actors import CLI
from healthway.domain.audit import AuditAction
from healthway.domain.delivery_states import AttemptOutcome
from healthway.domain.retry import AttemptResult
from healthway.runtime import Healthway, Part, running
from healthway.services import mllp_peers
from healthway.services.logs import LogFilter, list_page
from healthway.services.mllp_peers import REFUSAL_AUDIT_SECONDS, PeerDirectory
from healthway.services.paging import EnvironmentScope
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import AuditEvent, Environment, Log
from healthway.testing import loopback_guard
from healthway.transports.mllp.listener import build_listener
from tests.factories import make_org, make_source

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2"
ADT_A01 = (FIXTURES / "adt_a01.hl7").read_bytes()  # MSH-10 HWS-A01-0001, segments end with \r
ORU_R01 = (FIXTURES / "oru_r01.hl7").read_bytes()  # MSH-10 HWS-R01-0001
ENHANCED = (FIXTURES / "enhanced_ack_mode.hl7").read_bytes()  # MSH-15 AL: enhanced acknowledgment mode
CRLF = (FIXTURES / "crlf_separators.hl7").read_bytes()  # segments end with \r\n
UTF8 = (FIXTURES / "utf8_msh18.hl7").read_bytes()  # MSH-18 UNICODE UTF-8, names with non-ASCII letters
NOT_HL7 = (FIXTURES / "malformed" / "not_hl7.bin").read_bytes()
NO_CONTROL_ID = (FIXTURES / "malformed" / "no_control_id.hl7").read_bytes()
MLLP_SEND = str(Path(sys.executable).parent / "mllp_send")

SB, EB, CR = b"\x0b", b"\x1c", b"\r"
TIMEOUT = 10.0  # every wait in these tests is bounded by this
QUIET = 0.3  # how long "nothing arrives" is watched for


def framed(message: bytes) -> bytes:
    return SB + message + EB + CR


def with_control_id(message: bytes, control_id: str) -> bytes:
    """``message`` (one of the ADT/ORU samples) with another MSH-10."""
    old = hl7.parse(message.decode()).segment("MSH")[10]
    return message.replace(f"|{old}|".encode(), f"|{control_id}|".encode(), 1)


# -- a running node --------------------------------------------------------------------------------------------


class NodeThread:
    """Runs ``parts`` (as ``server.run`` does) in an event loop on a thread, from ``__enter__`` to ``__exit__``."""

    def __init__(self, parts: Sequence[Part]) -> None:
        self.parts = parts
        self.error: BaseException | None = None
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="mllp-node", daemon=True)

    def __enter__(self) -> NodeThread:
        self._thread.start()
        assert self._started.wait(TIMEOUT), "the node did not start"
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *_: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive(), "the node did not stop"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # raised again in the test's thread
            self.error = exc
        finally:
            self._started.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with running(self.parts):
            self._started.set()
            await self._stop.wait()


@dataclass
class Node:
    hw: Healthway
    port: int
    source_id: str
    environment_id: str

    @property
    def db(self) -> Database:
        return self.hw.db

    def connect(self, address: str = "127.0.0.1") -> socket.socket:
        return connect(self.port, address)

    def logs(self, control_id: str | None = None) -> list[Log]:
        """Stored logs (from a connection of their own: what is committed), oldest first."""
        query = sa.select(Log).options(sa.orm.undefer(Log.payload)).order_by(Log.received_at, Log.id)
        if control_id is not None:
            query = query.where(Log.control_id == control_id)
        with self.db.read_session() as session:
            rows = list(session.scalars(query))
            session.expunge_all()
            return rows

    def refusals(self) -> list[str | None]:
        """The client address of each ``mllp_peer:refused`` audit event, in order."""
        query = sa.select(AuditEvent.client_address).where(AuditEvent.action == AuditAction.MLLP_PEER_REFUSED)
        with self.db.read_session() as session:
            return list(session.scalars(query.order_by(AuditEvent.id)))

    def metric(self, name: str, **labels: str) -> float:
        return self.hw.metrics.get_sample_value(name, labels) or 0.0


@contextmanager
def serving(
    db: Database, *, cidr: str | None = "127.0.0.1/32", client_cert_sha256: str | None = None, **settings: Any
) -> Iterator[Node]:
    """A node with one source whose MLLP peer is ``cidr`` (None: no peer at all), listening on a free port."""
    with db.session() as session:
        world = make_org(session)
        environment = world.envs["development"]
        source = make_source(session, environment)
        if cidr is not None:
            mllp_peers.add(
                session,
                actor=CLI,
                source=source,
                environment=environment,
                cidr=cidr,
                client_cert_sha256=client_cert_sha256,
            )
        source_id, environment_id = source.id, environment.id
    hw = build(Settings(_env_file=None, **settings), db=db)
    sock = server.bind("127.0.0.1", 0, "MLLP")
    listener = build_listener(hw, sock)
    try:
        with NodeThread([*hw.parts, listener]):
            assert listener.is_up()
            yield Node(hw, sock.getsockname()[1], source_id, environment_id)
        assert not listener.is_up()
    finally:
        sock.close()


@pytest.fixture
def node(db: Database) -> Iterator[Node]:
    with serving(db) as running_node:
        yield running_node


# -- an independent MLLP peer on a raw socket -----------------------------------------------------------------


def connect(port: int, address: str = "127.0.0.1") -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` from ``address`` (any 127.x.y.z), every read bounded."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=(address, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_acks(sock: socket.socket, count: int) -> list[bytes]:
    """The next ``count`` ACKs (unframed); fails if the connection ends first or sends bytes outside frames."""
    buffer, acks = b"", list[bytes]()
    while len(acks) < count:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {len(acks)} of {count} ACKs"
        buffer += chunk
        while (end := buffer.find(EB + CR)) >= 0:
            frame, buffer = buffer[:end], buffer[end + 2 :]
            assert frame[:1] == SB, frame
            acks.append(frame[1:])
    assert buffer == b"", "bytes after the last expected ACK"
    return acks


def exchange(sock: socket.socket, *messages: bytes) -> list[bytes]:
    """Send ``messages`` in one write, each in its frame; their ACKs."""
    sock.sendall(b"".join(framed(m) for m in messages))
    return read_acks(sock, len(messages))


def nothing_arrives(sock: socket.socket) -> bool:
    """True when the connection stays open and silent for ``QUIET`` seconds."""
    readable, _, _ = select.select([sock], [], [], QUIET)
    return not readable


def until_closed(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes (a reset counts as closed); fails if it stays open."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (a database read) until it holds, for at most ``TIMEOUT`` seconds."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def deliver(target: Target, *payloads: bytes) -> list[AttemptResult]:
    """What a Healthway MLLP destination does with ``payloads``: its sender, over one connection."""

    async def go() -> list[AttemptResult]:
        sender = MllpSender(guard=loopback_guard(), timeout=TIMEOUT)
        try:
            messages = [Message(f"d{n}", f"l{n}", "s", "x-application/hl7-v2+er7", p) for n, p in enumerate(payloads)]
            return [await sender.send(target, message) for message in messages]
        finally:
            await sender.aclose()

    return asyncio.run(go())


def parsed(ack: bytes) -> Any:
    """An ACK as python-hl7 reads it (an independent reader of what the listener wrote)."""
    return hl7.parse(ack.decode())


def msa(ack: bytes) -> tuple[str, str]:
    """MSA-1 (acknowledgment code) and MSA-2 (the acknowledged MSH-10)."""
    segment = parsed(ack).segment("MSA")
    return str(segment[1]), str(segment[2])


def err_condition(ack: bytes) -> str:
    """ERR-3.1: the HL7 table 0357 error condition code."""
    return str(parsed(ack).segment("ERR")[3][0][0])


# -- accepted messages ------------------------------------------------------------------------------------------


def test_aa_after_commit_with_the_log_stored_as_received(node: Node) -> None:
    with hl7.client.MLLPClient("127.0.0.1", node.port) as client:
        client.socket.settimeout(TIMEOUT)
        answer = client.send_message(ADT_A01)
        # Visible from another connection the moment the ACK arrived: durable before acknowledged.
        stored = node.logs("HWS-A01-0001")
    assert answer[:1] == SB and answer.endswith(EB + CR)
    ack = answer[1:-2]
    assert msa(ack) == ("AA", "HWS-A01-0001")
    assert b"\rERR" not in ack
    [log] = stored
    assert (log.transport, log.message_type, log.event_type) == ("mllp", "ADT^A01", "A01")
    assert (log.source_id, log.environment_id) == (node.source_id, node.environment_id)
    assert log.payload == ADT_A01 and log.size == len(ADT_A01)
    assert node.metric("healthway_mllp_acks_total", status="accept") == 1


def test_logs_are_listed_by_transport_like_http_ones(node: Node) -> None:
    with node.connect() as sock:
        assert [msa(a) for a in exchange(sock, ADT_A01, ORU_R01)] == [("AA", "HWS-A01-0001"), ("AA", "HWS-R01-0001")]
    with node.db.read_session() as session:
        environment = session.get_one(Environment, node.environment_id)
        scope = EnvironmentScope(environment.organization_id, environment.name)
        mllp = list_page(session, actor=CLI, scope=scope, filters=LogFilter(transport="mllp")).items
        http = list_page(session, actor=CLI, scope=scope, filters=LogFilter(transport="http")).items
        listed = [(log["control_id"], log["message_type"]) for log in mllp]
    assert listed == [("HWS-R01-0001", "ORU^R01"), ("HWS-A01-0001", "ADT^A01")]  # newest first
    assert list(http) == []


def test_enhanced_mode_is_acknowledged_ca(node: Node) -> None:
    with node.connect() as sock:
        [ack] = exchange(sock, ENHANCED)
    assert msa(ack) == ("CA", "HWS-ENH-0001")
    [log] = node.logs("HWS-ENH-0001")
    assert log.message_type == "ADT^A04"


def test_the_ack_header_mirrors_the_message_header(node: Node) -> None:
    with node.connect() as sock:
        [ack] = exchange(sock, ADT_A01)
    msh = parsed(ack).segment("MSH")
    assert [str(msh[n]) for n in (3, 4, 5, 6)] == ["HEALTHWAY", "HWGW", "NW_ADT", "NORTHWIND_GH"]
    assert (str(msh[11]), str(msh[12])) == ("P", "2.5.1")
    assert str(msh[10]) not in ("", "HWS-A01-0001")  # a fresh control ID of its own


def test_the_ack_uses_the_message_s_own_encoding_characters(node: Node) -> None:
    """Field separator ``#`` and component separator ``@``: the ACK writes its MSH and MSA with them."""
    message = b"MSH#@~\\&#LAB#SOUTH#GW#NORTH#20250314083000##ORU@R01@ORU_R01#SEP-0001#T#2.3.1\rPID#1##42@@@SOUTH\r"
    with node.connect() as sock:
        [ack] = exchange(sock, message)
    msh, msa_segment = ack.decode().split("\r")[:2]
    fields = msh.split("#")
    assert fields[:2] == ["MSH", "@~\\&"]
    assert fields[2:6] == ["GW", "NORTH", "LAB", "SOUTH"]
    assert (fields[8], fields[10], fields[11]) == ("ACK@R01@ACK", "T", "2.3.1")
    assert msa_segment == "MSA#AA#SEP-0001"
    [log] = node.logs("SEP-0001")
    assert (log.message_type, log.test) == ("ORU^R01", True)


def test_a_duplicate_control_id_is_acknowledged_again_and_stored_once(node: Node) -> None:
    with node.connect() as first:
        assert [msa(a) for a in exchange(first, ADT_A01)] == [("AA", "HWS-A01-0001")]
    with node.connect() as second:  # a resend after a lost ACK comes on a new connection
        assert [msa(a) for a in exchange(second, ADT_A01, ADT_A01)] == [("AA", "HWS-A01-0001")] * 2
    assert len(node.logs("HWS-A01-0001")) == 1


def send_with_mllp_send(port: int, directory: Path) -> list[tuple[str, str]]:
    """ADT^A01 then ORU^R01 sent by python-hl7's ``mllp_send`` on one connection; (MSA-1, MSA-2) of each ACK."""
    messages = directory / "messages.hl7"
    messages.write_bytes(ADT_A01.replace(b"\r", b"\n") + ORU_R01.replace(b"\r", b"\n"))  # --loose: lines
    sent = subprocess.run(
        [MLLP_SEND, "--port", str(port), "--file", str(messages), "--loose", "127.0.0.1"],
        capture_output=True,
        timeout=TIMEOUT * 2,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr
    return [msa(part.strip(b"\n")[1:]) for part in sent.stdout.split(EB + CR) if part.strip(b"\n")]


def test_mllp_send_command_line_peer(node: Node, tmp_path: Path) -> None:
    """python-hl7's own sender: two messages from one file, one connection."""
    assert send_with_mllp_send(node.port, tmp_path) == [("AA", "HWS-A01-0001"), ("AA", "HWS-R01-0001")]
    [log] = node.logs("HWS-R01-0001")
    assert log.payload == ORU_R01.rstrip(b"\r")  # mllp_send strips the last segment's \r; kept as received


def test_the_raw_bytes_are_kept_as_received_with_the_charset_and_peer(node: Node) -> None:
    with node.connect() as sock:
        assert msa(exchange(sock, UTF8)[0]) == ("AA", "HWS-UTF8-0001")
    [log] = node.logs("HWS-UTF8-0001")
    assert log.payload == UTF8 and "Brückner".encode() in log.payload
    assert log.meta is not None
    assert (log.meta["request"]["charset"], log.meta["request"]["peer"]) == ("UNICODE UTF-8", "127.0.0.1")


def test_gateway_to_gateway_a_healthway_mllp_destination_delivers_here(node: Node) -> None:
    target = Target("other-healthway", "mllp", {"host": "127.0.0.1", "port": node.port})
    results = deliver(target, ADT_A01, ORU_R01)
    assert [(r.outcome, r.response_code) for r in results] == [(AttemptOutcome.DELIVERED, "AA")] * 2
    assert [log.control_id for log in node.logs()] == ["HWS-A01-0001", "HWS-R01-0001"]


# -- framing ----------------------------------------------------------------------------------------------------


def test_two_frames_in_one_write_are_both_answered_in_order(node: Node) -> None:
    with node.connect() as sock:
        acks = exchange(sock, ORU_R01, ADT_A01)
    assert [msa(a) for a in acks] == [("AA", "HWS-R01-0001"), ("AA", "HWS-A01-0001")]
    assert [log.control_id for log in node.logs()] == ["HWS-R01-0001", "HWS-A01-0001"]


def test_a_frame_split_byte_by_byte_is_kept_whole(node: Node) -> None:
    with node.connect() as sock:
        data = framed(ADT_A01)
        for index in range(len(data) - 1):
            sock.sendall(data[index : index + 1])
        assert nothing_arrives(sock)  # the end bytes are not all there yet
        sock.sendall(data[-1:])
        [ack] = read_acks(sock, 1)
    assert msa(ack) == ("AA", "HWS-A01-0001")
    assert node.logs("HWS-A01-0001")[0].payload == ADT_A01


def test_a_frame_without_its_start_byte_is_discarded_and_the_next_one_answered(node: Node) -> None:
    headless = ORU_R01 + EB + CR  # no 0x0B: not a frame
    with node.connect() as sock:
        sock.sendall(headless + framed(ADT_A01))
        [ack] = read_acks(sock, 1)  # ACKs come in frame order: the first is for the first frame
        assert nothing_arrives(sock)
    assert msa(ack) == ("AA", "HWS-A01-0001")
    assert [log.control_id for log in node.logs()] == ["HWS-A01-0001"]
    assert node.metric("healthway_mllp_discarded_bytes_total") == len(headless)


def test_no_ack_until_the_carriage_return_after_0x1c(node: Node) -> None:
    with node.connect() as sock:
        sock.sendall(SB + ADT_A01 + EB)
        assert nothing_arrives(sock)
        assert node.logs() == []  # nothing cut, nothing stored: 0x1C alone ends no frame
        sock.sendall(CR)
        [ack] = read_acks(sock, 1)
    assert msa(ack) == ("AA", "HWS-A01-0001")


def test_crlf_separators_are_answered_in_kind_and_stored_as_received(node: Node) -> None:
    with node.connect() as sock:
        [ack] = exchange(sock, CRLF)
    segments = ack.split(b"\r\n")
    assert segments[-1] == b"" and len(segments) == 3, ack  # MSH, MSA, each ending with \r\n
    assert segments[1] == b"MSA|AA|HWS-A01-CRLF-0001"
    [log] = node.logs("HWS-A01-CRLF-0001")
    assert log.payload == CRLF and log.message_type == "ADT^A01"


def test_a_5_mb_message_is_accepted(node: Node) -> None:
    note = b"NTE|%d||" + b"x" * 1000 + b"\r"
    big = with_control_id(ADT_A01, "HWS-BIG-0001") + b"".join(note % n for n in range(5200))
    assert len(big) > 5 * 1024 * 1024
    with node.connect() as sock:
        [ack] = exchange(sock, big)
    assert msa(ack) == ("AA", "HWS-BIG-0001")
    [log] = node.logs("HWS-BIG-0001")
    assert log.size == len(big) and log.payload == big


# -- refused messages -------------------------------------------------------------------------------------------


def test_bytes_that_are_not_hl7_are_rejected_ar_with_err(node: Node) -> None:
    with node.connect() as sock:
        [ack] = exchange(sock, NOT_HL7)
        assert msa(exchange(sock, ADT_A01)[0]) == ("AA", "HWS-A01-0001")  # the connection goes on
    assert msa(ack) == ("AR", "")
    assert err_condition(ack) == "207"
    assert "not an HL7v2 message" in ack.decode()
    assert [log.control_id for log in node.logs()] == ["HWS-A01-0001"]
    assert node.metric("healthway_mllp_acks_total", status="reject") == 1


def test_an_empty_msh_10_is_rejected_ar_and_nothing_stored(node: Node) -> None:
    with node.connect() as sock:
        [ack] = exchange(sock, NO_CONTROL_ID)
    assert msa(ack) == ("AR", "")
    assert err_condition(ack) == "101"  # required field missing
    msh = parsed(ack).segment("MSH")
    assert [str(msh[n]) for n in (3, 5)] == ["HEALTHWAY", "NW_ADT"]  # still answered in the message's terms
    assert node.logs() == []


def test_a_message_over_the_size_limit_is_rejected_and_the_connection_goes_on(db: Database) -> None:
    limit = 2048
    assert len(ADT_A01) < limit < len(ORU_R01)
    with serving(db, max_message_bytes=limit) as node, node.connect() as sock:
        first = exchange(sock, ORU_R01, ADT_A01)  # the too-large frame and the next one in one write
        too_large_alone = with_control_id(ORU_R01, "HWS-R01-0002") * 4  # passes the limit before its end
        sock.sendall(SB + too_large_alone)
        sock.sendall(EB + CR + framed(with_control_id(ADT_A01, "HWS-A01-0002")))
        second = read_acks(sock, 2)
        logs = node.logs()
    assert [msa(a) for a in first] == [("AR", "HWS-R01-0001"), ("AA", "HWS-A01-0001")]
    assert [msa(a) for a in second] == [("AR", "HWS-R01-0002"), ("AA", "HWS-A01-0002")]
    assert f"larger than {limit} bytes" in first[0].decode()
    assert [log.control_id for log in logs] == ["HWS-A01-0001", "HWS-A01-0002"]


# -- connections ------------------------------------------------------------------------------------------------


def test_a_peer_outside_the_allowlist_is_closed_unanswered_and_audited_once_a_minute(node: Node) -> None:
    for address in ("127.0.0.2", "127.0.0.2", "127.0.0.3"):
        with node.connect(address) as sock:
            sock.sendall(framed(ADT_A01))
            assert until_closed(sock) == b""
    with node.connect("127.0.0.1") as allowed:  # the source's own network is still served
        assert msa(exchange(allowed, ORU_R01)[0]) == ("AA", "HWS-R01-0001")
    assert node.refusals() == ["127.0.0.2", "127.0.0.3"]  # 127.0.0.2's second refusal within the minute: no event
    assert [log.control_id for log in node.logs()] == ["HWS-R01-0001"]
    assert node.metric("healthway_mllp_refused_connections_total") == 3


def test_a_refused_address_is_audited_again_once_the_minute_has_passed(db: Database) -> None:
    now = [1000.0]
    directory = PeerDirectory(db, monotonic=lambda: now[0])
    directory.refuse("10.9.8.7")
    now[0] += REFUSAL_AUDIT_SECONDS - 1
    directory.refuse("10.9.8.7")  # within the minute: no second event
    now[0] += 1
    directory.refuse("10.9.8.7")
    query = sa.select(AuditEvent.client_address).where(AuditEvent.action == AuditAction.MLLP_PEER_REFUSED)
    with db.read_session() as session:
        assert list(session.scalars(query)) == ["10.9.8.7", "10.9.8.7"]


def test_without_any_peer_every_connection_is_refused(db: Database) -> None:
    with serving(db, cidr=None) as node, node.connect() as sock:
        sock.sendall(framed(ADT_A01))
        assert until_closed(sock) == b""
        assert node.refusals() == ["127.0.0.1"]
        assert node.logs() == []


def test_concurrent_connections_are_each_answered_in_order(node: Node) -> None:
    connections, per_connection = 8, 5

    def converse(number: int) -> tuple[list[str], list[tuple[str, str]]]:
        sent = [f"C{number}-{n}" for n in range(per_connection)]
        with node.connect() as sock:
            acks = exchange(sock, *(with_control_id(ADT_A01, control_id) for control_id in sent))
        return sent, [msa(a) for a in acks]

    with ThreadPoolExecutor(connections) as pool:
        results = list(pool.map(converse, range(connections)))
    for sent, answered in results:
        assert answered == [("AA", control_id) for control_id in sent]
    stored = [str(log.control_id) for log in node.logs()]
    assert sorted(stored) == sorted(c for sent, _ in results for c in sent)
    for sent, _ in results:  # one connection's messages are committed in the order they were sent
        assert [c for c in stored if c in sent] == sent


def test_a_peer_gone_before_reading_its_ack_leaves_exactly_one_stored_message(node: Node) -> None:
    with node.connect() as sock:
        sock.sendall(framed(ADT_A01))
    wait_for(lambda: bool(node.logs("HWS-A01-0001")), "the message to be stored")
    with node.connect() as resend:  # the peer resends what it never saw acknowledged: a duplicate
        assert msa(exchange(resend, ADT_A01)[0]) == ("AA", "HWS-A01-0001")
    assert len(node.logs("HWS-A01-0001")) == 1


def test_an_idle_connection_is_closed_after_the_idle_timeout(db: Database) -> None:
    with serving(db, mllp_idle_timeout=0.5) as node, node.connect() as sock:
        before_last_byte = time.monotonic()  # the listener's idle timer starts after this, when the byte arrives
        assert msa(exchange(sock, ADT_A01)[0]) == ("AA", "HWS-A01-0001")
        assert until_closed(sock) == b""
        assert time.monotonic() - before_last_byte >= 0.45  # not before the timeout (less timer slack)
