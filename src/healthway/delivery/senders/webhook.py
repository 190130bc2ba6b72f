"""Webhook destinations (DESIGN §7): ``POST <url>`` with the stored body, signed the Standard Webhooks way."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

import aiohttp
import yarl

from healthway.delivery.guarded import GuardedResolver, check_literal
from healthway.delivery.senders import SEND_TIMEOUT, Message, Target
from healthway.domain.delivery_states import AttemptOutcome
from healthway.domain.retry import AttemptResult
from healthway.net.outbound import AddressRefused, OutboundGuard

MAX_ANSWER = 2**20  # bytes of a destination's answer read before giving up on reusing its connection
USER_AGENT = "Healthway"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret): Standard Webhooks' prefix for signing secrets


def sign(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 over ``{id}.{timestamp}.{body}``.

    Written out rather than taken from the ``standardwebhooks`` package because its ``sign`` takes text, and
    uploaded files need not be UTF-8; the tests verify our signatures with that package.
    """
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class UnsafeHeader(ValueError):
    """A header value built from stored data holds a control character (a verification token stored before they
    were refused, an odd content type): sending it could split the request, and retrying cannot fix it."""


def headers_for(target: Target, message: Message, *, now: int | None = None) -> dict[str, str]:
    """The request headers of a delivery. Raises UnsafeHeader (naming the header, never its value)."""
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
    for name, value in headers.items():
        if _CONTROL.search(value):
            raise UnsafeHeader(f"the {name} header would hold a control character; the destination must be recreated")
    return headers


class WebhookSender:
    """One pooled aiohttp session for every webhook destination: connections are kept alive per host and reused.

    aiohttp rather than httpx (used for FHIR and synchronous requests) because this is the delivery hot path: on
    loopback its client made 2.7 times as many POSTs per second one at a time, 6.7 times as many eight at a time
    (3,000 POSTs of 1 KB to bench/webhook_receiver.py).
    """

    def __init__(self, *, guard: OutboundGuard, timeout: float = SEND_TIMEOUT) -> None:
        self._guard = guard
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop it was made on, and the worker runs its own loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # Every address it connects to comes from the guard (resolved, checked, then used as is).
                connector=aiohttp.TCPConnector(limit=200, limit_per_host=50, resolver=GuardedResolver(self._guard)),
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),  # a destination's cookies must not reach another destination
                headers={"user-agent": USER_AGENT},
                trust_env=False,  # no proxy from the environment: it would connect to addresses nobody checked
            )
        return self._session

    async def send(self, target: Target, message: Message) -> AttemptResult:
        try:
            headers = headers_for(target, message)
        except UnsafeHeader as exc:  # final: the same stored value would fail every retry and block the FIFO lane
            return AttemptResult(AttemptOutcome.REJECTED, None, str(exc))
        url = yarl.URL(str(target.config["url"]))
        try:
            check_literal(self._guard, url.host or "")
            # No redirects: a redirect would re-send PHI somewhere nobody configured.
            async with self._client().post(
                url, data=message.payload, headers=headers, allow_redirects=False
            ) as response:
                await _drain(response)
                status = response.status
        except (TimeoutError, AddressRefused, aiohttp.ClientError) as exc:
            return AttemptResult.retry(_failure(exc))
        code = str(status)
        if 200 <= status < 300:
            return AttemptResult(AttemptOutcome.DELIVERED, code, f"HTTP {code}")
        return AttemptResult.retry(f"HTTP {code}", code)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _failure(exc: BaseException) -> str:
    """A short attempt detail for a POST that got no answer."""
    if isinstance(exc, TimeoutError):
        return "no answer within the timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, AddressRefused):  # from the guarded resolver
            return str(exc.os_error)
        return f"cannot connect: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, AddressRefused):
        return str(exc)
    return f"request failed: {type(exc).__name__}"


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read the (unused) answer, so the connection can carry the next message; a huge one is cut off, and then
    aiohttp closes that connection instead of reusing it."""
    read = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        read += len(chunk)
        if read > MAX_ANSWER:
            return
