"""Pages of views: what every list use case answers (Platform API, CLI and dashboard alike)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

V = TypeVar("V")
View = dict[str, Any]  # an object as the wire shows it (DESIGN §6): the CLI's --json and the Platform API


@dataclass(frozen=True)
class Page(Generic[V]):
    """One page of a list, and the opaque cursor of the next one (None on the last page)."""

    items: list[V]
    next_cursor: str | None


@dataclass(frozen=True)
class EnvironmentScope:
    """Which environments a list covers: ``environment`` of the caller's organization, or every one the caller may
    read when it is None (``organization_id`` names the organization when the caller has several)."""

    organization_id: str | None = None
    environment: str | None = None


def every(fetch: Callable[[str | None], Page[V]]) -> list[V]:
    """Every item of a list, page after page (``fetch`` takes the cursor): for callers that show all at once."""
    items: list[V] = []
    cursor: str | None = None
    while True:
        current = fetch(cursor)
        items += current.items
        if current.next_cursor is None:
            return items
        cursor = current.next_cursor
