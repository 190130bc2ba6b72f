"""Failing deliveries are told in the server log (issue 16): a warning per failed attempt, an error on giving up."""

from __future__ import annotations

from structlog.testing import capture_logs

from healthway.storage.db import Database
from healthway.testing import FakeClock, RecordingSender
from tests.integration.test_delivery_worker import clock, make_worker, run, send_logs, sender, setup

__all__ = ["clock", "sender"]  # fixtures


def test_each_failed_attempt_is_a_warning_and_giving_up_an_error(
    db: Database, sender: RecordingSender, clock: FakeClock
) -> None:
    worker = make_worker(db, clock, sender, max_age=10)
    source, [destination_id] = setup(db, "fifo")
    [log_id] = send_logs(db, source, clock, 1)
    sender.fail_next(10)
    with capture_logs() as lines:
        run(worker)  # attempts 1 and 2 (immediately) fail
        clock.advance(10)
        run(worker)  # attempt 3 fails, and the next one would come after max age: failed for good
    failures = [line for line in lines if line["event"].startswith("delivery")]
    assert [(line["log_level"], line["attempt"]) for line in failures] == [("warning", 1), ("warning", 2), ("error", 3)]
    for line in failures:
        assert (line["destination_id"], line["log_id"]) == (destination_id, log_id)
        assert line["reason"] == "connection refused (fake)"
        assert "message 0" not in str(line)  # the payload never reaches the log
    assert failures[-1]["event"] == "delivery failed for good"


def test_a_delivered_attempt_logs_nothing(db: Database, sender: RecordingSender, clock: FakeClock) -> None:
    worker = make_worker(db, clock, sender)
    source, _ = setup(db, "fifo")
    send_logs(db, source, clock, 1)
    with capture_logs() as lines:
        run(worker)
    assert len(sender.sent) == 1
    assert [line for line in lines if line["event"].startswith("delivery")] == []
