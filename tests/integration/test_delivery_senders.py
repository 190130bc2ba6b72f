"""Every sender against a real peer on loopback: an HTTP server, a python-hl7 MLLP server, an asyncssh SFTP server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncssh
import hl7
import hl7.mllp
import pytest
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook
from werkzeug import Request, Response

from healthway.delivery.senders import Message, Target
from healthway.delivery.senders.fhir import DestinationUnavailable, FhirSender
from healthway.delivery.senders.mllp import MllpSender
from healthway.delivery.senders.sftp import SftpSender
from healthway.delivery.senders.webhook import WebhookSender
from healthway.domain.delivery_states import AttemptOutcome
from healthway.services.destinations import new_signing_secret
from healthway.testing import loopback_guard

ADT = "MSH|^~\\&|EHR|HOSP|GW|HOSP|202601010000||ADT^A01|{id}|P|2.5\rPID|1||42^^^HOSP||DOE^JANE\r"


def hl7_message(control_id: str) -> Message:
    payload = ADT.format(id=control_id).encode()
    return Message("delivery-1", "log-1", "source-1", "x-application/hl7-v2+er7", payload, control_id)


JSON_MESSAGE = Message("delivery-1", "log-1", "source-1", "application/json", b'{"Meta": {"DataModel": "X"}}')


# -- webhook ---------------------------------------------------------------------------------------------------


def test_webhook_posts_the_body_with_headers_and_a_verifiable_signature(httpserver: HTTPServer) -> None:
    secret = new_signing_secret()
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok", status=204)
    target = Target("dest-1", "webhook", {"url": httpserver.url_for("/hook"), "signing_secret": secret})
    target_with_token = Target("dest-1", "webhook", {**target.config, "verification_token": "vt-123"})

    async def go() -> list[Any]:
        sender = WebhookSender(guard=loopback_guard())
        try:
            return [await sender.send(target, JSON_MESSAGE), await sender.send(target_with_token, JSON_MESSAGE)]
        finally:
            await sender.aclose()

    results = asyncio.run(go())
    assert [(r.outcome, r.response_code) for r in results] == [(AttemptOutcome.DELIVERED, "204")] * 2
    (first, _), (second, _) = httpserver.log
    assert first.data == JSON_MESSAGE.payload and first.headers["Content-Type"] == "application/json"
    assert first.headers["Healthway-Log-Id"] == "log-1" and first.headers["Healthway-Source-Id"] == "source-1"
    assert "verification-token" not in first.headers and second.headers["verification-token"] == "vt-123"
    Webhook(secret).verify(first.data, dict(first.headers))  # raises when the signature is wrong
    with pytest.raises(Exception, match="signature"):
        Webhook(new_signing_secret()).verify(first.data, dict(first.headers))


def test_webhook_signs_bodies_that_are_not_utf8(httpserver: HTTPServer) -> None:
    secret = new_signing_secret()
    httpserver.expect_request("/hook").respond_with_data("ok")
    target = Target("d", "webhook", {"url": httpserver.url_for("/hook"), "signing_secret": secret})
    binary = Message("d1", "l1", "s1", "application/octet-stream", bytes(range(256)))

    async def go() -> None:
        sender = WebhookSender(guard=loopback_guard())
        try:
            assert (await sender.send(target, binary)).outcome is AttemptOutcome.DELIVERED
        finally:
            await sender.aclose()

    asyncio.run(go())
    request, _ = httpserver.log[0]
    assert request.data == bytes(range(256))
    assert request.headers["webhook-signature"].startswith("v1,")


def test_webhook_non_2xx_and_timeouts_are_retried(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fail").respond_with_data("nope", status=503)

    def slow(_request: Request) -> Response:
        time.sleep(1)
        return Response("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)

    async def go() -> list[Any]:
        sender = WebhookSender(guard=loopback_guard(), timeout=0.2)
        try:
            fail = await sender.send(Target("d", "webhook", {"url": httpserver.url_for("/fail")}), JSON_MESSAGE)
            late = await sender.send(Target("d", "webhook", {"url": httpserver.url_for("/slow")}), JSON_MESSAGE)
            gone = await sender.send(Target("d", "webhook", {"url": "http://127.0.0.1:9/x"}), JSON_MESSAGE)
            return [fail, late, gone]
        finally:
            await sender.aclose()

    fail, late, gone = asyncio.run(go())
    assert (fail.outcome, fail.response_code) == (AttemptOutcome.FAILED, "503")
    assert late.outcome is AttemptOutcome.FAILED and "timeout" in late.detail
    assert gone.outcome is AttemptOutcome.FAILED and "cannot connect" in gone.detail


def test_webhook_follows_no_redirect_and_survives_a_huge_answer(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/moved").respond_with_data("", status=302, headers={"Location": "/elsewhere"})
    httpserver.expect_request("/big").respond_with_data(b"x" * (5 * 2**20), status=200)

    async def go() -> list[Any]:
        sender = WebhookSender(guard=loopback_guard())
        try:
            moved = await sender.send(Target("d", "webhook", {"url": httpserver.url_for("/moved")}), JSON_MESSAGE)
            big = await sender.send(Target("d", "webhook", {"url": httpserver.url_for("/big")}), JSON_MESSAGE)
            again = await sender.send(Target("d", "webhook", {"url": httpserver.url_for("/big")}), JSON_MESSAGE)
            return [moved, big, again]
        finally:
            await sender.aclose()

    moved, big, again = asyncio.run(go())
    assert (moved.outcome, moved.response_code) == (AttemptOutcome.FAILED, "302")  # PHI never follows a redirect
    paths = [request.path for request, _ in httpserver.log]  # (the server is shared: earlier tests' requests too)
    assert paths[-3:] == ["/moved", "/big", "/big"] and "/elsewhere" not in paths
    assert big.outcome is AttemptOutcome.DELIVERED and again.outcome is AttemptOutcome.DELIVERED


# -- MLLP ------------------------------------------------------------------------------------------------------


@asynccontextmanager
async def mllp_peer(answer: Callable[[hl7.Message], str]) -> AsyncIterator[tuple[int, list[str]]]:
    """A python-hl7 MLLP server answering each message with ``answer(message)`` (an ER7 ACK)."""
    received: list[str] = []
    connections: list[asyncio.StreamWriter] = []

    async def handle(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        connections.append(writer)
        try:
            while not reader.at_eof():
                message = await reader.readmessage()
                received.append(str(message.segment("MSH")[10]))
                writer.writemessage(answer(message))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await hl7.mllp.start_hl7_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], received
    finally:
        server.close()
        for writer in connections:
            writer.close()
        await server.wait_closed()


def ack(code: str, control_id: str | None = None) -> Callable[[hl7.Message], str]:
    def answer(message: hl7.Message) -> str:
        return str(message.create_ack(code, message_id="ACK1")).replace(
            f"MSA|{code}|{message.segment('MSH')[10]}", f"MSA|{code}|{control_id or message.segment('MSH')[10]}"
        )

    return answer


@pytest.mark.parametrize(
    ("code", "outcome"),
    [("AA", AttemptOutcome.DELIVERED), ("CA", AttemptOutcome.DELIVERED),
     ("AE", AttemptOutcome.FAILED), ("CE", AttemptOutcome.FAILED),
     ("AR", AttemptOutcome.REJECTED), ("CR", AttemptOutcome.REJECTED)],
)  # fmt: skip
def test_mllp_acknowledgment_codes(code: str, outcome: AttemptOutcome) -> None:
    async def go() -> Any:
        async with mllp_peer(ack(code)) as (port, received):
            sender = MllpSender(guard=loopback_guard())
            try:
                result = await sender.send(Target("m", "mllp", {"host": "127.0.0.1", "port": port}), hl7_message("C1"))
            finally:
                await sender.aclose()
            assert received == ["C1"]
            return result

    result = asyncio.run(go())
    assert (result.outcome, result.response_code) == (outcome, code)


def test_mllp_reuses_one_connection_and_checks_the_control_id() -> None:
    async def go() -> None:
        async with mllp_peer(ack("AA")) as (port, received):
            sender = MllpSender(guard=loopback_guard())
            target = Target("m", "mllp", {"host": "127.0.0.1", "port": port})
            try:
                results = await asyncio.gather(*(sender.send(target, hl7_message(f"C{n}")) for n in range(5)))
                assert all(r.outcome is AttemptOutcome.DELIVERED for r in results)
                assert sorted(received) == [f"C{n}" for n in range(5)]
                assert len(sender._connections) == 1  # one connection, one message in flight on it
            finally:
                await sender.aclose()
        async with mllp_peer(ack("AA", control_id="SOMETHING-ELSE")) as (port, _):
            sender = MllpSender(guard=loopback_guard())
            try:
                wrong = await sender.send(Target("m", "mllp", {"host": "127.0.0.1", "port": port}), hl7_message("C9"))
            finally:
                await sender.aclose()
            assert wrong.outcome is AttemptOutcome.FAILED and "control ID" in wrong.detail

    asyncio.run(go())


def test_mllp_reconnects_after_the_peer_drops_the_connection() -> None:
    async def go() -> None:
        sender = MllpSender(guard=loopback_guard(), timeout=2)
        try:
            async with mllp_peer(ack("AA")) as (port, _):
                target = Target("m", "mllp", {"host": "127.0.0.1", "port": port})
                assert (await sender.send(target, hl7_message("C1"))).outcome is AttemptOutcome.DELIVERED
            down = await sender.send(target, hl7_message("C2"))  # the peer is gone
            assert down.outcome is AttemptOutcome.FAILED
            async with mllp_peer(ack("AA")) as (port2, received):
                target = Target("m", "mllp", {"host": "127.0.0.1", "port": port2})
                assert (await sender.send(target, hl7_message("C2"))).outcome is AttemptOutcome.DELIVERED
                assert received == ["C2"]
        finally:
            await sender.aclose()

    asyncio.run(go())


# -- SFTP ------------------------------------------------------------------------------------------------------


class _PasswordServer(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == "partner" and password == "s3cret-pass"


@asynccontextmanager
async def sftp_peer(root: Path) -> AsyncIterator[tuple[int, str]]:
    """An asyncssh SFTP server on loopback, chrooted to ``root``; yields (port, host key fingerprint)."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_factory=_PasswordServer,
        server_host_keys=[host_key],
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root).encode()),
    )
    try:
        yield server.sockets[0].getsockname()[1], host_key.get_fingerprint("sha256")
    finally:
        server.close()
        await server.wait_closed()


def test_sftp_uploads_under_a_temporary_name_then_renames_with_a_pinned_host_key(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()

    async def go() -> list[Any]:
        async with sftp_peer(tmp_path) as (port, fingerprint):
            config = {
                "host": "127.0.0.1",
                "port": port,
                "username": "partner",
                "password": "s3cret-pass",
                "path": "/inbox",
                "host_key_sha256": fingerprint,
            }
            sender = SftpSender(guard=loopback_guard(), timeout=10)
            good = await sender.send(Target("s", "sftp", config), hl7_message("C1"))
            wrong_key = await sender.send(
                Target("s", "sftp", {**config, "host_key_sha256": "SHA256:" + "A" * 43}), hl7_message("C2")
            )
            bad_login = await sender.send(Target("s", "sftp", {**config, "password": "nope"}), hl7_message("C3"))
            return [good, wrong_key, bad_login]

    good, wrong_key, bad_login = asyncio.run(go())
    assert good.outcome is AttemptOutcome.DELIVERED, good.detail
    assert [p.name for p in (tmp_path / "inbox").iterdir()] == ["log-1.hl7"]  # no .part file left behind
    assert (tmp_path / "inbox" / "log-1.hl7").read_bytes() == hl7_message("C1").payload
    assert wrong_key.outcome is AttemptOutcome.FAILED and "host key" in wrong_key.detail
    assert bad_login.outcome is AttemptOutcome.FAILED and "refused the login" in bad_login.detail
    assert "s3cret" not in good.detail + wrong_key.detail + bad_login.detail


# -- FHIR ------------------------------------------------------------------------------------------------------


def test_fhir_forwards_queries_and_delivers_message_bundles(httpserver: HTTPServer) -> None:
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": 1}
    httpserver.expect_request("/r4/Patient", query_string="family=Doe").respond_with_json(bundle)
    httpserver.expect_request("/r4/$process-message", method="POST").respond_with_json({}, status=200)
    httpserver.expect_request("/r4/Observation", method="POST").respond_with_json({}, status=422)
    target = Target("f", "fhir", {"url": httpserver.url_for("/r4/")})
    message = {"resourceType": "Bundle", "type": "message", "entry": []}

    async def go() -> list[Any]:
        sender = FhirSender(guard=loopback_guard(), timeout=2)
        try:
            answer = await sender.request(target, method="GET", path="Patient", params={"family": "Doe"})
            sent = await sender.send(
                target, Message("d", "l", "s", "application/fhir+json", json.dumps(message).encode())
            )
            refused = await sender.send(
                target, Message("d", "l", "s", "application/fhir+json", b'{"resourceType": "Observation"}')
            )
            with pytest.raises(DestinationUnavailable) as down:
                await sender.request(
                    Target("f", "fhir", {"url": "http://127.0.0.1:9/r4"}), method="GET", path="Patient"
                )
            assert not down.value.timed_out
            return [answer, sent, refused]
        finally:
            await sender.aclose()

    answer, sent, refused = asyncio.run(go())
    assert answer.status_code == 200 and json.loads(answer.body) == bundle
    assert sent.outcome is AttemptOutcome.DELIVERED
    assert (refused.outcome, refused.response_code) == (AttemptOutcome.REJECTED, "422")
