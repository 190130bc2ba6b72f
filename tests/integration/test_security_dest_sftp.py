"""Issue 14 item 12: an SFTP destination never sends its credential to a server whose host key it has not checked;
a destination made without a fingerprint pins the key it meets first (trust on first use) and refuses any other.

A real asyncssh SFTP server on loopback records every connection and every authentication attempt it sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from healthway.delivery.host_keys import DatabaseHostKeyPins
from healthway.delivery.senders import Target, default_senders
from healthway.delivery.senders.sftp import SftpSender
from healthway.domain.delivery_states import AttemptOutcome
from healthway.domain.retry import AttemptResult
from healthway.services import destinations
from healthway.storage.db import Database
from healthway.storage.models import Destination
from healthway.testing import loopback_guard
from tests.factories import make_org
from tests.integration.test_mllp_tls import hl7_message

PASSWORD = "s3cret-pass"


@dataclass
class Seen:
    connections: int = 0
    auth_attempts: list[str] = field(default_factory=list)  # "begin:<user>" and "password:<password>"


@dataclass
class FakePins:
    """The destination rows' pins, in memory."""

    pinned: dict[str, str] = field(default_factory=dict)

    def pin(self, destination_id: str, fingerprint: str) -> str:
        return self.pinned.setdefault(destination_id, fingerprint)


@asynccontextmanager
async def impostor(root: Path, key: asyncssh.SSHKey | None = None) -> AsyncIterator[tuple[int, Seen]]:
    """An SFTP server with a host key of its own, accepting the right password; yields (port, what it saw)."""
    seen = Seen()

    class Server(asyncssh.SSHServer):
        def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
            seen.connections += 1

        def begin_auth(self, username: str) -> bool:
            seen.auth_attempts.append(f"begin:{username}")
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            seen.auth_attempts.append(f"password:{password}")
            return password == PASSWORD

    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_factory=Server,
        server_host_keys=[key or asyncssh.generate_private_key("ssh-ed25519")],
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root).encode()),
    )
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        await server.wait_closed()


def _send(
    root: Path, pins: FakePins | None = None, key: asyncssh.SSHKey | None = None, **config: Any
) -> tuple[AttemptResult, Seen]:
    async def go() -> tuple[AttemptResult, Seen]:
        async with impostor(root, key) as (port, seen):
            full = {"host": "127.0.0.1", "port": port, "username": "gw", "password": PASSWORD, "path": "/"} | config
            sender = SftpSender(guard=loopback_guard(), pins=pins, timeout=10)
            return await sender.send(Target("s", "sftp", full), hl7_message("K1")), seen

    return asyncio.run(go())


def test_a_server_presenting_another_key_gets_no_credential(tmp_path: Path) -> None:
    expected = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")  # the key we know
    result, seen = _send(tmp_path, host_key_sha256=expected)
    assert result.outcome is AttemptOutcome.FAILED
    assert result.detail == "the server's host key does not match the pinned fingerprint (no credential was sent)"
    assert seen.connections == 1 and seen.auth_attempts == []  # refused during key exchange, before any auth
    assert list(tmp_path.iterdir()) == []


def test_the_first_key_met_is_pinned_before_any_credential_and_another_is_refused(tmp_path: Path) -> None:
    pins, key = FakePins(), asyncssh.generate_private_key("ssh-ed25519")
    first, seen = _send(tmp_path, pins, key)
    assert first.outcome is AttemptOutcome.DELIVERED, first.detail
    assert pins.pinned == {"s": key.get_fingerprint("sha256")}
    assert seen.connections == 2 and seen.auth_attempts == ["begin:gw", f"password:{PASSWORD}"]  # fetch, then upload
    (tmp_path / "uploaded").mkdir()
    # The same destination, its config now holding the pin, meets a server with another key: nothing is sent.
    second, seen = _send(tmp_path / "uploaded", pins, host_key_sha256=pins.pinned["s"])
    assert second.outcome is AttemptOutcome.FAILED and "does not match the pinned fingerprint" in second.detail
    assert seen.auth_attempts == [] and list((tmp_path / "uploaded").iterdir()) == []


def test_without_a_pin_store_a_destination_without_a_fingerprint_is_not_connected_to(tmp_path: Path) -> None:
    result, seen = _send(tmp_path)
    assert result.outcome is AttemptOutcome.FAILED and "host_key_sha256" in result.detail
    assert seen.connections == 0 and seen.auth_attempts == []
    assert list(tmp_path.iterdir()) == []


def test_the_workers_pin_store_keeps_the_first_key_with_the_destination(db: Database, tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    with db.session() as session:
        env = make_org(session).envs["development"]
        destination = Destination(environment_id=env.id, name="drop", kind="sftp", config={})
        session.add(destination)

    async def go() -> AttemptResult:
        async with impostor(tmp_path, key) as (port, _):
            config = {"host": "127.0.0.1", "port": port, "username": "gw", "password": PASSWORD, "path": "/"}
            sender = default_senders(loopback_guard(), DatabaseHostKeyPins(db, destinations.pin_host_key)).get("sftp")
            assert sender is not None
            return await sender.send(Target(destination.id, "sftp", config), hl7_message("K2"))

    assert asyncio.run(go()).outcome is AttemptOutcome.DELIVERED
    with db.session() as session:
        stored = session.get(Destination, destination.id)
        assert stored is not None and stored.config["host_key_sha256"] == key.get_fingerprint("sha256")
