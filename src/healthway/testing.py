"""Fakes shipped for tests: a settable clock and a recording sender."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from healthway.delivery.senders import Message, Target
from healthway.domain.retry import AttemptResult, Outcome


@dataclass
class FakeClock:
    """A clock that moves only when told: ``clock()`` reads it, ``advance`` moves it."""

    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


DELIVERED = AttemptResult(Outcome.DELIVERED, "200", "HTTP 200")


@dataclass
class RecordingSender:
    """Records every message it is given and answers with ``respond(target, message)`` (delivered by default).

    ``fail_next(n)`` makes the next ``n`` sends fail with a retryable error; ``delay`` slows every send down.
    """

    respond: Callable[[Target, Message], AttemptResult] = lambda _t, _m: DELIVERED
    delay: float = 0.0
    sent: list[tuple[Target, Message]] = field(default_factory=list)
    _failures_left: int = 0

    def fail_next(self, n: int) -> None:
        self._failures_left = n

    async def send(self, target: Target, message: Message) -> AttemptResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.sent.append((target, message))
        if self._failures_left > 0:
            self._failures_left -= 1
            return AttemptResult.retry("connection refused (fake)", "503")
        return self.respond(target, message)

    async def aclose(self) -> None:
        return None

    def payloads(self, destination_id: str | None = None) -> list[bytes]:
        return [m.payload for t, m in self.sent if destination_id is None or t.id == destination_id]
