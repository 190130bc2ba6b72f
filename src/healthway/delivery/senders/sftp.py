"""SFTP destinations: upload each message as one file, under a temporary name, then rename it into place, so a
reader polling the directory never sees half a file.

The server's host key is pinned by its SHA-256 fingerprint (``host_key_sha256``, as ``ssh-keygen -lf`` prints it):
asyncssh checks the key during key exchange, before any authentication, so a server presenting another key never
sees the password or a signature. A destination created without a fingerprint is pinned on first use, as OpenSSH
does for a new host: the first connection only fetches the host key (no credential is sent on it), the pin is stored
with the destination (first writer wins, so two workers agree), and from then on any other key is refused. The host
is resolved and checked by the outbound guard first.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Mapping
from typing import Any, Protocol

import asyncssh
import structlog

from healthway.delivery.senders import SEND_TIMEOUT, Message, Target
from healthway.domain.delivery_states import AttemptOutcome
from healthway.domain.messages import ContentType
from healthway.domain.retry import AttemptResult
from healthway.net.outbound import AddressRefused, OutboundGuard

log = structlog.get_logger("healthway.delivery")
NO_FINGERPRINT = "no host key fingerprint (host_key_sha256) is pinned: nothing is sent to an unverified server"
KEY_FETCH_TIMEOUT = 10.0
_EXTENSIONS: dict[ContentType | None, str] = {
    ContentType.HL7V2: ".hl7",
    ContentType.JSON: ".json",
    ContentType.FHIR_JSON: ".json",
}


def file_name(message: Message) -> str:
    extension = _EXTENSIONS.get(ContentType.of(message.content_type), ".dat")
    return message.log_id + extension


def normalize_fingerprint(value: str) -> str:
    return value.strip().removeprefix("SHA256:").rstrip("=")


class HostKeyPins(Protocol):
    """Where first-use host keys are kept (the destination's row)."""

    def pin(self, destination_id: str, fingerprint: str) -> str:
        """Keep ``fingerprint`` as the destination's host key unless one is pinned already; the pinned one."""
        ...


class _PinnedHostKey(asyncssh.SSHClient):
    def __init__(self, fingerprint: str) -> None:
        self._fingerprint = fingerprint

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return normalize_fingerprint(key.get_fingerprint("sha256")) == self._fingerprint


def _connect_options(config: Mapping[str, Any]) -> dict[str, Any]:
    pinned = normalize_fingerprint(str(config["host_key_sha256"]))
    return {
        "username": config["username"],
        "password": config.get("password"),
        "client_keys": [asyncssh.import_private_key(config["private_key"])] if config.get("private_key") else None,
        "agent_path": None,  # never the gateway operator's own SSH agent
        # Empty trusted lists (not None, which would accept any key) make asyncssh ask validate_host_public_key.
        "known_hosts": ([], [], []),
        "client_factory": lambda: _PinnedHostKey(pinned),
        "config": [],  # not the operator's ~/.ssh/config either
    }


class SftpSender:
    """One connection per upload: SFTP destinations take batches of files, not a stream of small messages."""

    def __init__(self, *, guard: OutboundGuard, pins: HostKeyPins | None = None, timeout: float = SEND_TIMEOUT) -> None:
        """Without ``pins`` a destination must have its fingerprint already."""
        self._guard = guard
        self._pins = pins
        self._timeout = timeout

    async def send(self, target: Target, message: Message) -> AttemptResult:
        if not target.config.get("host_key_sha256") and self._pins is None:
            return AttemptResult.retry(NO_FINGERPRINT)
        try:
            path = await asyncio.wait_for(self._upload(target, message), self._timeout)
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            return AttemptResult.retry(_failure(exc))
        return AttemptResult(AttemptOutcome.DELIVERED, None, f"uploaded {path}")

    async def _upload(self, target: Target, message: Message) -> str:
        config = target.config
        directory = config.get("path") or "."
        final = posixpath.join(directory, file_name(message))
        temporary = posixpath.join(directory, f".{file_name(message)}.part")
        port = int(config["port"])
        address = (await self._guard.addresses(str(config["host"]), port))[0]
        if not config.get("host_key_sha256"):
            config = {**config, "host_key_sha256": await self._pin_first_key(target.id, address, port)}
        options = _connect_options(config)
        async with (
            asyncssh.connect(address, port, **options) as connection,
            connection.start_sftp_client() as sftp,
        ):
            async with sftp.open(temporary, "wb") as handle:
                await handle.write(message.payload)
            await _rename(sftp, temporary, final)
        return final

    async def _pin_first_key(self, destination_id: str, address: str, port: int) -> str:
        """Trust on first use: fetch the key the server presents (a handshake only, no credential) and pin it."""
        assert self._pins is not None
        key = await asyncio.wait_for(asyncssh.get_server_host_key(address, port, config=[]), KEY_FETCH_TIMEOUT)
        if key is None:
            raise asyncssh.HostKeyNotVerifiable("the server presented no host key")
        fingerprint = key.get_fingerprint("sha256")
        pinned = await asyncio.to_thread(self._pins.pin, destination_id, fingerprint)
        if pinned == fingerprint:
            log.info("sftp host key pinned on first use", destination_id=destination_id, fingerprint=fingerprint)
        return pinned

    async def aclose(self) -> None:
        return None


def _failure(exc: BaseException) -> str:
    """A short attempt detail for a failed upload."""
    if isinstance(exc, TimeoutError):
        return "the upload did not finish within the timeout"
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return "the server's host key does not match the pinned fingerprint (no credential was sent)"
    if isinstance(exc, AddressRefused):
        return str(exc)
    if isinstance(exc, asyncssh.PermissionDenied):
        return "the SFTP server refused the login"
    if isinstance(exc, asyncssh.SFTPError):
        return f"SFTP error: {exc.reason[:200]}"
    return f"connection failed: {type(exc).__name__}"


async def _rename(sftp: asyncssh.SFTPClient, source: str, target: str) -> None:
    """Atomic replace where the server offers it (OpenSSH's posix-rename), else remove and rename."""
    try:
        await sftp.posix_rename(source, target)
    except asyncssh.SFTPOpUnsupported:
        if await sftp.exists(target):
            await sftp.remove(target)
        await sftp.rename(source, target)
