"""``runtime.running``: parts start in order and stop in reverse, also when one fails to start."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from healthway.errors import ConfigurationError
from healthway.runtime import running


@dataclass
class Part:
    name: str
    events: list[str]
    fails: bool = False
    up: bool = field(default=False)

    async def start(self) -> None:
        if self.fails:
            raise ConfigurationError(f"{self.name} cannot start")
        self.events.append(f"start {self.name}")
        self.up = True

    async def stop(self) -> None:
        self.events.append(f"stop {self.name}")
        self.up = False

    def is_up(self) -> bool:
        return self.up


def test_parts_start_in_order_and_stop_in_reverse() -> None:
    events: list[str] = []
    parts = [Part("commit", events), Part("delivery", events), Part("mllp", events)]

    async def main() -> None:
        async with running(parts):
            assert all(part.is_up() for part in parts)
            events.append("serving")

    asyncio.run(main())
    assert events == [
        "start commit", "start delivery", "start mllp", "serving", "stop mllp", "stop delivery", "stop commit"
    ]  # fmt: skip


def test_a_part_that_cannot_start_stops_the_started_ones_and_the_rest_never_start() -> None:
    events: list[str] = []
    parts = [Part("commit", events), Part("metrics", events, fails=True), Part("http", events)]

    async def main() -> None:
        async with running(parts):
            events.append("serving")

    with pytest.raises(ConfigurationError, match="metrics cannot start"):
        asyncio.run(main())
    assert events == ["start commit", "stop commit"]
