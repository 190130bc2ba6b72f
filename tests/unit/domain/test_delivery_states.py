"""The state tables of logs and deliveries, and what an attempt's outcome does to its delivery."""

from __future__ import annotations

import pytest

from healthway.domain.delivery_states import (
    DELIVERY_MOVES,
    LOG_MOVES,
    AttemptOutcome,
    DeliveryStatus,
    IllegalTransition,
    LogStatus,
    advance,
    after_attempt,
    may_move,
)

FINISHED = [DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.FILTERED]


def test_values_are_the_stored_and_wire_strings() -> None:
    assert [s.value for s in LogStatus] == ["received", "delivered", "failed"]
    assert [s.value for s in DeliveryStatus] == ["pending", "delivered", "failed", "filtered"]
    assert [o.value for o in AttemptOutcome] == ["delivered", "failed", "rejected", "filtered"]
    assert "error" not in set(AttemptOutcome)  # one value for a failed attempt (migration 0004)


def test_every_state_has_a_row() -> None:
    assert set(LOG_MOVES) == set(LogStatus) and set(DELIVERY_MOVES) == set(DeliveryStatus)


@pytest.mark.parametrize("new", list(DeliveryStatus))
def test_a_pending_delivery_may_move_anywhere(new: DeliveryStatus) -> None:
    assert advance("pending", new) is new


@pytest.mark.parametrize("current", FINISHED)
@pytest.mark.parametrize("new", list(DeliveryStatus))
def test_a_finished_delivery_never_moves(current: DeliveryStatus, new: DeliveryStatus) -> None:
    assert not may_move(current.value, new)
    with pytest.raises(IllegalTransition, match=f"DeliveryStatus cannot move from '{current}' to '{new}'"):
        advance(current.value, new)


@pytest.mark.parametrize("new", list(LogStatus))
def test_a_received_log_settles_to_any_status(new: LogStatus) -> None:
    assert advance("received", new) is new


@pytest.mark.parametrize("current", [LogStatus.DELIVERED, LogStatus.FAILED])
def test_a_finished_log_only_reopens_for_a_replay(current: LogStatus) -> None:
    assert advance(current.value, LogStatus.RECEIVED) is LogStatus.RECEIVED
    for other in (LogStatus.DELIVERED, LogStatus.FAILED):
        with pytest.raises(IllegalTransition):
            advance(current.value, other)


def test_an_unknown_stored_value_is_refused() -> None:
    with pytest.raises(ValueError, match="'error' is not a valid DeliveryStatus"):
        may_move("error", DeliveryStatus.PENDING)


@pytest.mark.parametrize(
    ("outcome", "retry_later", "status"),
    [
        (AttemptOutcome.DELIVERED, True, DeliveryStatus.DELIVERED),
        (AttemptOutcome.REJECTED, True, DeliveryStatus.FAILED),
        (AttemptOutcome.FILTERED, True, DeliveryStatus.FILTERED),
        (AttemptOutcome.FAILED, True, DeliveryStatus.PENDING),
        (AttemptOutcome.FAILED, False, DeliveryStatus.FAILED),
        (AttemptOutcome.DELIVERED, False, DeliveryStatus.DELIVERED),
    ],
)
def test_an_attempt_moves_its_delivery(outcome: AttemptOutcome, retry_later: bool, status: DeliveryStatus) -> None:
    assert after_attempt(outcome, retry_later=retry_later) is status
    assert may_move("pending", status)
