"""Composition root: ``build(settings, **overrides)`` wires storage, services and transports.

Nothing is wired or opened at import time; every collaborator can be replaced in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from limits import RateLimitItem
from prometheus_client import CollectorRegistry

from healthway.delivery.host_keys import DatabaseHostKeyPins
from healthway.delivery.requests import Forwarder
from healthway.delivery.worker import build_worker
from healthway.domain.outbound import OutboundPolicy
from healthway.net.outbound import OutboundGuard, Resolver, SystemResolver
from healthway.services import destinations
from healthway.services.group_commit import GroupCommitter
from healthway.services.jwks_fetcher import HttpJwksFetcher, JwksFetcher
from healthway.services.login import PasswordChecker
from healthway.services.ratelimit import BruteForceGuard, RateLimiter, parse_limit
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import utcnow
from healthway.transports.http.metrics_listener import MetricsListener

Clock = Callable[[], datetime]


class Listener(Protocol):
    """A background part started and stopped with the HTTP server (MLLP, SFTP, delivery workers)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def is_up(self) -> bool: ...


@dataclass(frozen=True)
class RateLimits:
    """The parsed HEALTHWAY_RATE_LIMIT_* settings (None: no limit)."""

    per_address: RateLimitItem | None
    per_source: RateLimitItem | None

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(
            parse_limit(settings.rate_limit_per_address, "HEALTHWAY_RATE_LIMIT_PER_ADDRESS"),
            parse_limit(settings.rate_limit_per_source, "HEALTHWAY_RATE_LIMIT_PER_SOURCE"),
        )


@dataclass
class Healthway:
    settings: Settings
    db: Database
    clock: Clock
    metrics: CollectorRegistry
    committer: GroupCommitter
    rate_limiter: RateLimiter
    rate_limits: RateLimits
    guard: BruteForceGuard
    jwks_fetcher: JwksFetcher
    forwarder: Forwarder
    password_checker: PasswordChecker
    outbound: OutboundGuard  # the outbound-address policy: destinations are checked with it when made and used
    listeners: list[Listener] = field(default_factory=list)


def build(
    settings: Settings,
    *,
    db: Database | None = None,
    clock: Clock | None = None,
    listeners: list[Listener] | None = None,
    jwks_fetcher: JwksFetcher | None = None,
    password_checker: PasswordChecker | None = None,
    resolver: Resolver | None = None,
) -> Healthway:
    """``resolver`` answers every DNS question about a destination's host (tests give a fake one)."""
    db = db or Database(settings.resolved_database_url)
    rate_limiter = RateLimiter(settings.redis_url)
    clock, metrics = clock or utcnow, CollectorRegistry()
    outbound = OutboundGuard(OutboundPolicy.from_settings(settings), resolver or SystemResolver())
    worker = build_worker(
        db=db,
        clock=clock,
        metrics=metrics,
        max_age_seconds=settings.delivery_max_age,
        guard=outbound,
        host_keys=DatabaseHostKeyPins(db, destinations.pin_host_key),
    )
    committer = GroupCommitter(db)
    forwarder = Forwarder(timeout=settings.request_timeout, guard=outbound, max_answer_bytes=settings.http_max_bytes)
    extra: list[Listener] = [MetricsListener(settings.metrics_address, metrics)] if settings.metrics_address else []
    return Healthway(
        settings=settings,
        db=db,
        clock=clock,
        metrics=metrics,
        committer=committer,
        rate_limiter=rate_limiter,
        rate_limits=RateLimits.from_settings(settings),
        guard=BruteForceGuard(rate_limiter),
        jwks_fetcher=jwks_fetcher or HttpJwksFetcher(allow_private=settings.allow_private_jwks_urls),
        forwarder=forwarder,
        password_checker=password_checker or PasswordChecker(),
        outbound=outbound,
        listeners=[committer, worker, forwarder, *extra, *(listeners or [])],
    )
