"""The states of a log and of its deliveries, what one attempt can end in, and which moves between them are legal.

Stored by value (the columns stay strings): ``LogStatus.FAILED == "failed"``. Each table lists, for a state, the
states it may move to; ``advance`` refuses any other move with ``IllegalTransition`` (a bug, never user input).

    delivery: pending ──attempt──> pending (retry later) | delivered | failed | filtered     (the last three final)
    log:      received ──settled──> received (a delivery still pending) | delivered | failed
              delivered | failed ──replay──> received
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar


class LogStatus(StrEnum):
    RECEIVED = "received"  # stored; a delivery is still pending (or none was ever made)
    DELIVERED = "delivered"  # every delivery delivered (or filtered)
    FAILED = "failed"  # none pending, at least one given up


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # given up: rejected, or retried until HEALTHWAY_DELIVERY_MAX_AGE
    FILTERED = "filtered"  # never sent: the destination cannot carry this content


class AttemptOutcome(StrEnum):
    """How one attempt ended."""

    DELIVERED = "delivered"
    FAILED = "failed"  # a failure worth retrying (timeout, refused connection, 5xx, AE/CE); final for a sync request
    REJECTED = "rejected"  # a final failure: the destination refused the message itself (AR/CR)
    FILTERED = "filtered"  # never sent: the destination cannot carry this content


class IllegalTransition(ValueError):
    """A move the state tables do not allow."""


S = TypeVar("S", LogStatus, DeliveryStatus)

LOG_MOVES: Mapping[LogStatus, frozenset[LogStatus]] = {
    LogStatus.RECEIVED: frozenset(LogStatus),
    LogStatus.DELIVERED: frozenset({LogStatus.RECEIVED}),
    LogStatus.FAILED: frozenset({LogStatus.RECEIVED}),
}
DELIVERY_MOVES: Mapping[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.PENDING: frozenset(DeliveryStatus),
    DeliveryStatus.DELIVERED: frozenset(),
    DeliveryStatus.FAILED: frozenset(),
    DeliveryStatus.FILTERED: frozenset(),
}
_FINAL = {
    AttemptOutcome.DELIVERED: DeliveryStatus.DELIVERED,
    AttemptOutcome.REJECTED: DeliveryStatus.FAILED,
    AttemptOutcome.FILTERED: DeliveryStatus.FILTERED,
}


def may_move(current: str, new: S) -> bool:
    """Whether a log or delivery in ``current`` (a stored value) may move to ``new``."""
    moves: Mapping[S, frozenset[S]] = LOG_MOVES if isinstance(new, LogStatus) else DELIVERY_MOVES
    return new in moves[type(new)(current)]


def advance(current: str, new: S) -> S:
    """``new``, if a log or delivery in ``current`` may move there; else IllegalTransition."""
    if not may_move(current, new):
        raise IllegalTransition(f"{type(new).__name__} cannot move from {current!r} to {new.value!r}")
    return new


def after_attempt(outcome: AttemptOutcome, *, retry_later: bool) -> DeliveryStatus:
    """A pending delivery's status after an attempt: a retryable failure keeps it pending while the retry policy
    gives it another try (``retry_later``), else fails it; any other outcome is final."""
    if outcome is AttemptOutcome.FAILED:
        return DeliveryStatus.PENDING if retry_later else DeliveryStatus.FAILED
    return _FINAL[outcome]
