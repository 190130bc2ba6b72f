"""Webhook destinations (DESIGN §7): ``POST <url>`` with the stored body, signed the Standard Webhooks way."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import urlsplit

import httpx

from healthway.delivery.senders import SEND_TIMEOUT, Message, Target
from healthway.domain.retry import AttemptResult, Outcome

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret): Standard Webhooks' prefix for signing secrets


def sign(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 over ``{id}.{timestamp}.{body}``.

    Written out rather than taken from the ``standardwebhooks`` package because its ``sign`` takes text, and
    uploaded files need not be UTF-8; the tests verify our signatures with that package.
    """
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers_for(target: Target, message: Message, *, now: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if now is None else now
    headers = {
        "content-type": message.content_type,
        "healthway-log-id": message.log_id,
        "healthway-source-id": message.source_id,
        "webhook-id": message.delivery_id,
        "webhook-timestamp": str(timestamp),
    }
    if secret := target.config.get("signing_secret"):
        signature = sign(secret, msg_id=message.delivery_id, timestamp=timestamp, body=message.payload)
        headers["webhook-signature"] = signature
    if token := target.config.get("verification_token"):
        headers["verification-token"] = token
    return headers


class WebhookSender:
    """Pooled HTTP clients, one per origin (scheme, host, port): connections are reused between messages, and a
    request never scans the connections of other destinations' servers for a free one."""

    def __init__(self, *, timeout: float = SEND_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._timeout, self._transport = timeout, transport
        self._clients: dict[tuple[str, str, int | None], httpx.AsyncClient] = {}

    def _client(self, url: str) -> httpx.AsyncClient:
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname or "", parts.port)
        if (client := self._clients.get(origin)) is None:
            client = self._clients[origin] = httpx.AsyncClient(
                timeout=self._timeout,
                transport=self._transport,
                follow_redirects=False,  # a redirect would re-send PHI somewhere nobody configured
                limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
            )
        return client

    async def send(self, target: Target, message: Message) -> AttemptResult:
        url = target.config["url"]
        try:
            response = await self._client(url).post(url, content=message.payload, headers=headers_for(target, message))
            await response.aclose()
        except httpx.TimeoutException:
            return AttemptResult.retry("no answer within the timeout")
        except httpx.HTTPError as exc:
            return AttemptResult.retry(f"request failed: {type(exc).__name__}")
        code = str(response.status_code)
        if response.is_success:
            return AttemptResult(Outcome.DELIVERED, code, f"HTTP {code}")
        return AttemptResult.retry(f"HTTP {code}", code)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
