"""Composition root: ``build(settings, **overrides)`` wires storage, services and the parts of one node.

Nothing is wired or opened at import time; every collaborator can be replaced in tests.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from healthway.delivery.forwarder import Forwarder
from healthway.delivery.host_keys import DatabaseHostKeyPins
from healthway.delivery.worker import build_worker
from healthway.domain.outbound import OutboundPolicy
from healthway.domain.passwords import Passwords
from healthway.net.outbound import OutboundGuard, Resolver, SystemResolver
from healthway.runtime import Clock, Healthway, Part, RateLimits, Sockets
from healthway.services import destinations
from healthway.services.intake import Intake
from healthway.services.jwks_fetcher import HttpJwksFetcher, JwksFetcher
from healthway.services.login import PasswordChecker
from healthway.services.oauth_server import OAuthServer
from healthway.services.ratelimit import BruteForceGuard, RateLimiter, parse_limit
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import utcnow
from healthway.transports.http.listener import HttpListener
from healthway.transports.http.metrics_listener import MetricsListener
from healthway.transports.mllp.listener import build_listener as mllp_listener

__all__ = ["Clock", "Healthway", "Part", "build"]  # the container's home is runtime.py; callers may name it here


def _rate_limits(settings: Settings) -> RateLimits:
    return RateLimits(
        parse_limit(settings.rate_limit_per_address, "HEALTHWAY_RATE_LIMIT_PER_ADDRESS"),
        parse_limit(settings.rate_limit_per_source, "HEALTHWAY_RATE_LIMIT_PER_SOURCE"),
    )


def build(
    settings: Settings,
    *,
    db: Database | None = None,
    clock: Clock | None = None,
    parts: list[Part] | None = None,
    listeners: list[Part] | None = None,
    jwks_fetcher: JwksFetcher | None = None,
    passwords: Passwords | None = None,
    password_checker: PasswordChecker | None = None,
    resolver: Resolver | None = None,
    rate_limiter: RateLimiter | None = None,
    sockets: Sockets | None = None,
) -> Healthway:
    """Wire one node. ``parts`` are started after the built-in ones (``listeners`` is their older name, still
    accepted), and the listeners on ``sockets`` last (HTTP the very last: requests come once everything behind them
    runs); ``resolver`` answers every DNS question about a destination's host (tests give a fake one);
    ``passwords`` defaults to argon2id's recommended parameters (tests give cheap ones: ``testing.CHEAP_PASSWORDS``);
    ``rate_limiter`` to sliding windows on the wall clock (tests give ``testing.FakeWindows`` on a settable one)."""
    db = db or Database(settings.resolved_database_url)
    rate_limiter = rate_limiter or RateLimiter(settings.redis_url)
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
    intake = Intake(db)
    passwords = passwords or Passwords()
    forwarder = Forwarder(timeout=settings.request_timeout, guard=outbound, max_answer_bytes=settings.http_max_bytes)
    jwks_fetcher = jwks_fetcher or HttpJwksFetcher(allow_private=settings.allow_private_jwks_urls)
    oauth = OAuthServer(
        db=db, submit=intake.committer.submit, fetcher=jwks_fetcher, audience=settings.token_url, clock=clock
    )
    extra: list[Part] = [MetricsListener(settings.metrics_address, metrics)] if settings.metrics_address else []
    hw = Healthway(
        settings=settings,
        db=db,
        clock=clock,
        metrics=metrics,
        intake=intake,
        oauth=oauth,
        rate_limiter=rate_limiter,
        rate_limits=_rate_limits(settings),
        guard=BruteForceGuard(rate_limiter),
        jwks_fetcher=jwks_fetcher,
        forwarder=forwarder,
        passwords=passwords,
        password_checker=password_checker or PasswordChecker(passwords),
        outbound=outbound,
        sockets=sockets or Sockets(),
        parts=[intake.committer, worker, forwarder, *extra, *(parts or []), *(listeners or [])],
    )
    if hw.sockets.mllp is not None:
        hw.parts.append(mllp_listener(hw, hw.sockets.mllp))
    if hw.sockets.http is not None:
        hw.parts.append(HttpListener(hw, hw.sockets.http))
    return hw
