"""Issue 14 item 12: an SFTP destination never sends its credential to a server whose host key it has not checked.

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

from healthway.delivery.senders import Target
from healthway.delivery.senders.sftp import SftpSender
from healthway.domain.retry import AttemptResult, Outcome
from healthway.testing import loopback_guard
from tests.integration.test_mllp_tls import hl7_message

PASSWORD = "s3cret-pass"


@dataclass
class Seen:
    connections: int = 0
    auth_attempts: list[str] = field(default_factory=list)  # "begin:<user>" and "password:<password>"


@asynccontextmanager
async def impostor(root: Path) -> AsyncIterator[tuple[int, Seen]]:
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
        server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root).encode()),
    )
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        await server.wait_closed()


def _send(root: Path, **config: Any) -> tuple[AttemptResult, Seen]:
    async def go() -> tuple[AttemptResult, Seen]:
        async with impostor(root) as (port, seen):
            full = {"host": "127.0.0.1", "port": port, "username": "gw", "password": PASSWORD, "path": "/"} | config
            sender = SftpSender(guard=loopback_guard(), timeout=10)
            return await sender.send(Target("s", "sftp", full), hl7_message("K1")), seen

    return asyncio.run(go())


def test_a_server_presenting_another_key_gets_no_credential(tmp_path: Path) -> None:
    expected = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")  # the key we know
    result, seen = _send(tmp_path, host_key_sha256=expected)
    assert result.outcome is Outcome.RETRY
    assert result.detail == "the server's host key does not match the pinned fingerprint (no credential was sent)"
    assert seen.connections == 1 and seen.auth_attempts == []  # refused during key exchange, before any auth
    assert list(tmp_path.iterdir()) == []


def test_a_destination_without_a_fingerprint_does_not_connect_at_all(tmp_path: Path) -> None:
    result, seen = _send(tmp_path)  # stored before the fingerprint was required
    assert result.outcome is Outcome.RETRY and "host_key_sha256" in result.detail
    assert seen.connections == 0 and seen.auth_attempts == []
    assert list(tmp_path.iterdir()) == []
