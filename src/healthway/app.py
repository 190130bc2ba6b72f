"""Composition root: ``build(settings, **overrides)`` wires storage, services and transports.

Nothing is wired or opened at import time; every collaborator can be replaced in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry

from healthway.delivery.worker import build_worker
from healthway.services.jwks_fetcher import HttpJwksFetcher, JwksFetcher
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import utcnow

Clock = Callable[[], datetime]


class Listener(Protocol):
    """A background part started and stopped with the HTTP server (MLLP, SFTP, delivery workers)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def is_up(self) -> bool: ...


@dataclass
class Healthway:
    settings: Settings
    db: Database
    clock: Clock
    metrics: CollectorRegistry
    jwks_fetcher: JwksFetcher
    listeners: list[Listener] = field(default_factory=list)


def build(
    settings: Settings,
    *,
    db: Database | None = None,
    clock: Clock | None = None,
    listeners: list[Listener] | None = None,
    jwks_fetcher: JwksFetcher | None = None,
) -> Healthway:
    db = db or Database(settings.resolved_database_url)
    clock, metrics = clock or utcnow, CollectorRegistry()
    worker = build_worker(db=db, clock=clock, metrics=metrics, max_age_seconds=settings.delivery_max_age)
    return Healthway(
        settings=settings,
        db=db,
        clock=clock,
        metrics=metrics,
        jwks_fetcher=jwks_fetcher or HttpJwksFetcher(allow_private=settings.allow_private_jwks_urls),
        listeners=[worker, *(listeners or [])],
    )
