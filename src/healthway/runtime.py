"""The running node: the ``Healthway`` container that ``app.build`` fills, the ``Part`` lifecycle, and ``Clock``.

A node is everything one process runs: storage, the intake door, the OAuth server, the delivery worker and the
listeners (HTTP, MLLP, SFTP), each a ``Part`` started in order and stopped in reverse by ``running``. Nothing
here knows a web framework: ``server.py`` runs the parts of a node, with uvicorn as one of them, and a process
pool (``HEALTHWAY_WORKERS``) can run one node per process, each built by ``app.build`` from the same settings.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import structlog

if TYPE_CHECKING:  # the container names its collaborators' types; they import nothing from here at run time
    from limits import RateLimitItem
    from prometheus_client import CollectorRegistry

    from healthway.delivery.forwarder import Forwarder
    from healthway.domain.passwords import Passwords
    from healthway.net.outbound import OutboundGuard
    from healthway.services.intake import Intake
    from healthway.services.jwks_fetcher import JwksFetcher
    from healthway.services.login import PasswordChecker
    from healthway.services.oauth_server import OAuthServer
    from healthway.services.ratelimit import BruteForceGuard, RateLimiter
    from healthway.settings import Settings
    from healthway.storage.db import Database

Clock = Callable[[], datetime]
log = structlog.get_logger("healthway")


class Part(Protocol):
    """Something a node starts and stops: a background task (group commit, delivery) or a listener (a socket).

    ``start`` returns once the part works (a listener accepts) or raises; ``stop`` finishes what is in flight and
    returns once the part is idle; ``is_up`` is what ``/readyz`` reports under ``name``."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def is_up(self) -> bool: ...


@asynccontextmanager
async def running(parts: Sequence[Part]) -> AsyncIterator[None]:
    """Start ``parts`` in order; on leaving (or when one fails to start) stop the started ones in reverse order,
    so that listeners stop taking work before the committer and the workers behind them stop."""
    started: list[Part] = []
    try:
        for part in parts:
            await part.start()
            started.append(part)
            log.info("part started", part=part.name)
        yield
    finally:
        for part in reversed(started):
            await part.stop()


@dataclass(frozen=True)
class Sockets:
    """The listening sockets of a node, bound before anything else (a busy port fails before the database is
    touched); None where the port setting is 0. A worker pool binds once and hands the same sockets to each
    process."""

    http: socket.socket | None = None
    mllp: socket.socket | None = None


@dataclass(frozen=True)
class RateLimits:
    """The parsed HEALTHWAY_RATE_LIMIT_* settings (None: no limit)."""

    per_address: RateLimitItem | None
    per_source: RateLimitItem | None


@dataclass
class Healthway:
    """One node's collaborators, wired by ``app.build``. ``parts`` are started and stopped by whoever runs the
    node (``server.run``, or a test's ``testing.running_app``)."""

    settings: Settings
    db: Database
    clock: Clock
    metrics: CollectorRegistry
    intake: Intake  # the one door every transport's messages come in by
    oauth: OAuthServer
    rate_limiter: RateLimiter
    rate_limits: RateLimits
    guard: BruteForceGuard
    jwks_fetcher: JwksFetcher
    forwarder: Forwarder
    passwords: Passwords  # hashes human passwords (argon2id); verification goes through password_checker's pool
    password_checker: PasswordChecker
    outbound: OutboundGuard  # the outbound-address policy: destinations are checked with it when made and used
    sockets: Sockets = field(default_factory=Sockets)
    parts: list[Part] = field(default_factory=list)
