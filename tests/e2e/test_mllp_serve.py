"""``healthway serve`` listening for MLLP, as a process: python-hl7's ``mllp_send`` and raw sockets as peers, the
logs read back with the ``healthway logs`` command, and the process killed or stopped with frames in flight."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Cli, Server, start_server
from tests.integration.test_mllp_listener import (
    ADT_A01,
    CR,
    EB,
    SB,
    TIMEOUT,
    connect,
    exchange,
    framed,
    msa,
    send_with_mllp_send,
    until_closed,
    wait_for,
    with_control_id,
)


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


@pytest.fixture
def mllp_port(cli: Cli) -> int:
    """An organization with a source whose MLLP peer is 127.0.0.1, made with the CLI; the port serve will use."""
    cli.invoke("init", "--admin-email", "admin@example.org")
    source = _json(cli.invoke("source", "create", "--env", "development", "--name", "EHR", "--json"))
    peer = _json(cli.invoke("mllp-peer", "add", "--source", source["id"], "--cidr", "127.0.0.1/32", "--json"))
    assert (peer["source_id"], peer["cidr"], peer["environment"]) == (source["id"], "127.0.0.1/32", "development")
    return int(cli.env["HEALTHWAY_MLLP_PORT"])


def logs(cli: Cli, *filters: str) -> list[dict[str, Any]]:
    return list(_json(cli.invoke("logs", "list", "--limit", "500", "--json", *filters))["logs"])


def control_ids(cli: Cli, *filters: str) -> list[str]:
    return [log["control_id"] for log in logs(cli, *filters)]


def acks_until_closed(sock: socket.socket) -> list[bytes]:
    """Every ACK the server sends on ``sock`` until it closes the connection (bounded by the socket's timeout)."""
    frames = until_closed(sock).split(EB + CR)
    assert frames[-1] == b"", "an ACK cut short"
    assert all(frame[:1] == SB for frame in frames[:-1])
    return [frame[1:] for frame in frames[:-1]]


def stop_for_good(server: Server) -> None:
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait(TIMEOUT)


def test_mllp_send_to_serve_then_logs_list_and_show(cli: Cli, mllp_port: int, tmp_path: Path) -> None:
    server = start_server(cli)
    try:
        assert httpx.get(f"{server.base_url}/readyz").json()["checks"]["mllp"] is True
        assert send_with_mllp_send(mllp_port, tmp_path) == [("AA", "HWS-A01-0001"), ("AA", "HWS-R01-0001")]
        listed = logs(cli, "--transport", "mllp")
        assert [(log["transport"], log["message_type"], log["control_id"]) for log in listed] == [
            ("mllp", "ORU^R01", "HWS-R01-0001"),
            ("mllp", "ADT^A01", "HWS-A01-0001"),
        ]
        assert logs(cli, "--transport", "http") == []
        assert control_ids(cli, "--message-type", "ADT^*") == ["HWS-A01-0001"]
        shown = _json(cli.invoke("logs", "show", listed[1]["id"], "--json"))
        assert (shown["transport"], shown["message_type"], shown["control_id"]) == ("mllp", "ADT^A01", "HWS-A01-0001")
    finally:
        assert server.stop() == 0


def test_sigkill_after_the_commit_and_before_the_ack_is_read_then_the_resend_is_a_duplicate(
    cli: Cli, mllp_port: int
) -> None:
    first = start_server(cli)
    try:
        with connect(mllp_port) as unread:
            unread.sendall(framed(ADT_A01))  # its ACK is never read
            wait_for(lambda: control_ids(cli) == ["HWS-A01-0001"], "the message to be committed")
            first.process.kill()
            assert first.process.wait(TIMEOUT) == -signal.SIGKILL
    finally:
        stop_for_good(first)
    second = start_server(cli)
    try:
        with connect(mllp_port) as resend:
            [ack] = exchange(resend, ADT_A01)
        assert msa(ack) == ("AA", "HWS-A01-0001")
        assert control_ids(cli) == ["HWS-A01-0001"]  # recognised as the duplicate it is: stored once
    finally:
        assert second.stop() == 0


def test_sigterm_with_frames_in_flight_acknowledges_only_what_it_stored(cli: Cli, mllp_port: int) -> None:
    connections, per_connection = 4, 25
    server = start_server(cli)
    with ExitStack() as open_connections:
        try:
            peers = [open_connections.enter_context(connect(mllp_port)) for _ in range(connections)]
            sent: list[list[str]] = []
            for number, sock in enumerate(peers):  # each connection accepted and admitted before the signal
                assert msa(exchange(sock, with_control_id(ADT_A01, f"W{number}"))[0]) == ("AA", f"W{number}")
                sent.append([f"T{number}-{n}" for n in range(per_connection)])
            for sock, control_ids_sent in zip(peers, sent, strict=True):
                sock.sendall(b"".join(framed(with_control_id(ADT_A01, c)) for c in control_ids_sent))
            server.process.send_signal(signal.SIGTERM)
            answered = []
            for sock, control_ids_sent in zip(peers, sent, strict=True):
                codes = [msa(ack) for ack in acks_until_closed(sock)]
                assert codes == [("AA", c) for c in control_ids_sent[: len(codes)]]  # in order, each accepted
                answered += [c for _, c in codes]
            assert server.process.wait(TIMEOUT) == 0  # within 5 s on an idle machine (test_serve)
        finally:
            stop_for_good(server)
    stored = set(control_ids(cli))
    assert set(answered) <= stored  # every ACK received stands for a stored message
    assert {f"W{number}" for number in range(connections)} <= stored
