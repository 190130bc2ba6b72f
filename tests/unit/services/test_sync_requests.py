"""``sync_requests.exchange``: the answer, or 502/504, and always recorded first, whatever the destination did."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from healthway.domain.messages import ContentType
from healthway.domain.sync_requests import Answer, Route
from healthway.errors import BadGateway, GatewayTimeout, HealthwayError
from healthway.services import sync_requests
from healthway.services.intake import Submission
from healthway.testing import FakeClock

ROUTE = Route("subscription", "destination", "webhook", {})
SUBMISSION = Submission("source", "env", "http", ContentType.JSON, b"{}", datetime(2026, 1, 1, tzinfo=UTC))


def _exchange(call: Callable[[], Awaitable[Answer]]) -> tuple[Answer | HealthwayError, list[str]]:
    """(the answer or the error raised, what was submitted for commit by then)."""
    events: list[str] = []

    async def submit(_work: Callable[[Session], str]) -> str:
        events.append("recorded")
        return SUBMISSION.log_id

    async def go() -> Answer:
        return await sync_requests.exchange(
            call, route=ROUTE, submission=SUBMISSION, within=0.2, clock=FakeClock(), submit=submit
        )

    try:
        return asyncio.run(go()), events
    except HealthwayError as exc:
        return exc, events


def test_a_2xx_answer_is_recorded_and_returned() -> None:
    async def call() -> Answer:
        return Answer(201, ContentType.JSON, b'{"ok": true}', "HTTP 201")

    answer, events = _exchange(call)
    assert answer == Answer(201, ContentType.JSON, b'{"ok": true}', "HTTP 201") and events == ["recorded"]


def test_another_answer_is_recorded_then_502() -> None:
    async def call() -> Answer:
        return Answer(500, "text/plain", b"boom", "HTTP 500")

    error, events = _exchange(call)
    assert isinstance(error, BadGateway) and "HTTP 500" in error.message and events == ["recorded"]


@pytest.mark.parametrize("how", ["too slow", "raises TimeoutError"])
def test_no_answer_in_time_is_recorded_then_504(how: str) -> None:
    async def call() -> Answer:
        if how == "too slow":
            await asyncio.sleep(30)  # cancelled by the exchange after 0.2 s
        raise TimeoutError

    error, events = _exchange(call)
    assert isinstance(error, GatewayTimeout) and "0.2 s" in error.message and events == ["recorded"]
