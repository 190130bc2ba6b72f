"""Senders: one small class per destination kind behind the ``Sender`` Protocol, chosen from a registry.

A sender turns one message into one attempt result. It never raises for a delivery problem (refused connection,
timeout, bad answer): it reports ``AttemptOutcome.FAILED`` (retried) or ``REJECTED`` with a short detail, which must not
contain secrets or payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from healthway.domain.retry import AttemptResult

if TYPE_CHECKING:
    from healthway.delivery.senders.sftp import HostKeyPins
    from healthway.net.outbound import OutboundGuard

SEND_TIMEOUT = 30.0  # DESIGN §7: no answer in 30 s = retry


@dataclass(frozen=True)
class Target:
    """A destination as a sender needs it: its kind-specific ``config`` (url, host, port, credentials, ...)."""

    id: str
    kind: str
    config: Mapping[str, Any]


@dataclass(frozen=True)
class Message:
    delivery_id: str  # stable across retries of one delivery (Standard Webhooks ``webhook-id``)
    log_id: str
    source_id: str
    content_type: str
    payload: bytes
    control_id: str | None = None  # MSH-10 of an HL7v2 message


class Sender(Protocol):
    """Delivers messages to destinations of one kind. One instance serves every destination of that kind, so it
    may keep connections open between messages; ``aclose`` closes them."""

    async def send(self, target: Target, message: Message) -> AttemptResult: ...

    async def aclose(self) -> None: ...


class Senders:
    """The registry: destination kind → sender."""

    def __init__(self, senders: Mapping[str, Sender]) -> None:
        self._senders = dict(senders)

    def get(self, kind: str) -> Sender | None:
        return self._senders.get(kind)

    async def aclose(self) -> None:
        for sender in self._senders.values():
            await sender.aclose()


def default_senders(guard: OutboundGuard, pins: HostKeyPins | None = None, timeout: float = SEND_TIMEOUT) -> Senders:
    """The real senders (imported here so that merely importing the registry opens nothing). Every connection
    they open goes through ``guard`` (the outbound-address policy); ``pins`` keeps SFTP host keys met first."""
    from healthway.delivery.senders.fhir import FhirSender  # noqa: PLC0415
    from healthway.delivery.senders.mllp import MllpSender  # noqa: PLC0415
    from healthway.delivery.senders.sftp import SftpSender  # noqa: PLC0415
    from healthway.delivery.senders.webhook import WebhookSender  # noqa: PLC0415

    return Senders(
        {
            "webhook": WebhookSender(guard=guard, timeout=timeout),
            "mllp": MllpSender(guard=guard, timeout=timeout),
            "sftp": SftpSender(guard=guard, pins=pins, timeout=timeout),
            "fhir": FhirSender(guard=guard, timeout=timeout),
        }
    )
