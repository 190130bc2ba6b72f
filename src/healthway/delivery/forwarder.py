"""Forwarding synchronous requests: a Data Model query to a webhook destination, a FHIR read/search to a FHIR
server. Unlike deliveries these are never retried: the caller waits for the answer (HEALTHWAY_REQUEST_TIMEOUT)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import httpx

from healthway.delivery.guarded import AnswerTooLarge, guarded_client, read_capped
from healthway.delivery.senders import Message, Target
from healthway.delivery.senders.fhir import DestinationUnavailable, FhirSender
from healthway.delivery.senders.webhook import UnsafeHeader, headers_for
from healthway.domain.messages import ContentType
from healthway.domain.sync_requests import Answer, Route
from healthway.net.outbound import AddressRefused, OutboundGuard


class TimedOut(TimeoutError):
    """The destination did not answer within the request timeout (→ 504, as ``sync_requests.exchange`` says)."""


class Forwarder:
    """An app Listener owning the pooled HTTP clients used for synchronous requests."""

    name = "sync_requests"

    def __init__(self, *, timeout: float, guard: OutboundGuard, max_answer_bytes: int) -> None:
        """``max_answer_bytes``: a destination's answer is read up to this size; a larger one is a failure (502)."""
        self._timeout = timeout
        self._guard = guard
        self._max_answer = max_answer_bytes
        self._client: httpx.AsyncClient | None = None
        self._fhir: FhirSender | None = None

    async def start(self) -> None:
        self._client = guarded_client(self._guard, timeout=self._timeout)
        self._fhir = FhirSender(guard=self._guard, timeout=self._timeout, max_answer_bytes=self._max_answer)

    async def stop(self) -> None:
        for closable in (self._client, self._fhir):
            if closable is not None:
                await closable.aclose()

    def is_up(self) -> bool:
        return self._client is not None and not self._client.is_closed

    async def query(self, route: Route, *, source_id: str, log_id: str, content_type: str, body: bytes) -> Answer:
        """POST a Data Model query to a webhook destination, signed like a delivery; its answer is the result."""
        assert self._client is not None, "started with the server"
        message = Message(str(uuid.uuid4()), log_id, source_id, content_type, body)
        target = Target(route.destination_id, route.kind, route.config)
        try:
            headers = headers_for(target, message)
        except UnsafeHeader as exc:
            return Answer(0, "", b"", str(exc))
        request = self._client.build_request("POST", str(route.config["url"]), content=body, headers=headers)
        try:
            response = await self._client.send(request, stream=True)  # streamed: read up to the cap, no further
            try:
                answer = await read_capped(response, self._max_answer)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise TimedOut from None
        except (AddressRefused, AnswerTooLarge) as exc:
            return Answer(0, "", b"", str(exc))
        except httpx.HTTPError as exc:
            return Answer(0, "", b"", f"request failed: {type(exc).__name__}")
        content = response.headers.get("content-type", ContentType.JSON)
        return Answer(response.status_code, content, answer, f"HTTP {response.status_code}")

    async def fhir(self, route: Route, *, method: str, path: str, params: Mapping[str, str]) -> Answer:
        assert self._fhir is not None, "started with the server"
        target = Target(route.destination_id, route.kind, route.config)
        try:
            answer = await self._fhir.request(target, method=method, path=path, params=params, timeout=self._timeout)
        except DestinationUnavailable as exc:
            if exc.timed_out:
                raise TimedOut from None
            return Answer(0, "", b"", str(exc))
        return Answer(answer.status_code, answer.content_type, answer.body, f"HTTP {answer.status_code}")
