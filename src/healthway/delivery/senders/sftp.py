"""SFTP destinations: upload each message as one file, under a temporary name, then rename it into place, so a
reader polling the directory never sees half a file.

The server's host key is pinned by its SHA-256 fingerprint when the destination has one (``host_key_sha256``,
as ``ssh-keygen -lf`` prints it); the password is only sent after the key matched.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Mapping
from typing import Any

import asyncssh
import structlog

from healthway.delivery.senders import SEND_TIMEOUT, Message, Target
from healthway.domain.retry import AttemptResult, Outcome

log = structlog.get_logger("healthway.delivery")
_EXTENSIONS = {"x-application/hl7-v2+er7": ".hl7", "application/json": ".json", "application/fhir+json": ".json"}


def file_name(message: Message) -> str:
    extension = _EXTENSIONS.get(message.content_type.split(";")[0].strip().lower(), ".dat")
    return message.log_id + extension


def normalize_fingerprint(value: str) -> str:
    return value.strip().removeprefix("SHA256:").rstrip("=")


class _PinnedHostKey(asyncssh.SSHClient):
    def __init__(self, fingerprint: str) -> None:
        self._fingerprint = fingerprint

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return normalize_fingerprint(key.get_fingerprint("sha256")) == self._fingerprint


def _connect_options(config: Mapping[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {
        "username": config["username"],
        "password": config.get("password"),
        "client_keys": [asyncssh.import_private_key(config["private_key"])] if config.get("private_key") else None,
        "agent_path": None,  # never the gateway operator's own SSH agent
    }
    if fingerprint := config.get("host_key_sha256"):
        pinned = normalize_fingerprint(fingerprint)
        # Empty trusted lists (not None) make asyncssh ask validate_host_public_key about every key.
        options |= {"known_hosts": ([], [], []), "client_factory": lambda: _PinnedHostKey(pinned)}
    else:
        options["known_hosts"] = None
    return options


class SftpSender:
    """One connection per upload: SFTP destinations take batches of files, not a stream of small messages."""

    def __init__(self, *, timeout: float = SEND_TIMEOUT) -> None:
        self._timeout = timeout

    async def send(self, target: Target, message: Message) -> AttemptResult:
        try:
            path = await asyncio.wait_for(self._upload(target.config, message), self._timeout)
        except TimeoutError:
            return AttemptResult.retry("the upload did not finish within the timeout")
        except asyncssh.HostKeyNotVerifiable:
            return AttemptResult.retry("the server's host key does not match the pinned fingerprint")
        except asyncssh.PermissionDenied:
            return AttemptResult.retry("the SFTP server refused the login")
        except asyncssh.SFTPError as exc:
            return AttemptResult.retry(f"SFTP error: {exc.reason[:200]}")
        except (OSError, asyncssh.Error) as exc:
            return AttemptResult.retry(f"connection failed: {type(exc).__name__}")
        return AttemptResult(Outcome.DELIVERED, None, f"uploaded {path}")

    async def _upload(self, config: Mapping[str, Any], message: Message) -> str:
        if not config.get("host_key_sha256"):
            log.warning("sftp host key not pinned", host=config["host"])
        directory = config.get("path") or "."
        final = posixpath.join(directory, file_name(message))
        temporary = posixpath.join(directory, f".{file_name(message)}.part")
        options = _connect_options(config)
        async with (
            asyncssh.connect(config["host"], int(config["port"]), **options) as connection,
            connection.start_sftp_client() as sftp,
        ):
            async with sftp.open(temporary, "wb") as handle:
                await handle.write(message.payload)
            await _rename(sftp, temporary, final)
        return final

    async def aclose(self) -> None:
        return None


async def _rename(sftp: asyncssh.SFTPClient, source: str, target: str) -> None:
    """Atomic replace where the server offers it (OpenSSH's posix-rename), else remove and rename."""
    try:
        await sftp.posix_rename(source, target)
    except asyncssh.SFTPOpUnsupported:
        if await sftp.exists(target):
            await sftp.remove(target)
        await sftp.rename(source, target)
