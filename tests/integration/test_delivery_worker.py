"""The delivery worker against both databases, with a recording sender and a clock the test moves."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from healthway.delivery.attempts import RetryPolicy
from healthway.delivery.metrics import DeliveryMetrics
from healthway.delivery.senders import Message, Senders, Target
from healthway.delivery.worker import DeliveryWorker, WorkerOptions
from healthway.domain.actors import CLI
from healthway.domain.delivery_states import AttemptOutcome
from healthway.domain.retry import AttemptResult
from healthway.services import destinations
from healthway.storage import queue
from healthway.storage.db import Database
from healthway.storage.models import Attempt, Delivery, Log, Source
from healthway.testing import DELIVERED, FakeClock, RecordingSender, loopback_guard
from tests.factories import make_destination, make_log, make_org, make_source, make_subscription


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


def make_worker(db: Database, clock: FakeClock, sender: RecordingSender, max_age: float = 24 * 3600) -> DeliveryWorker:
    return DeliveryWorker(
        db=db,
        clock=clock,
        policy=RetryPolicy(max_age=timedelta(seconds=max_age)),
        metrics=DeliveryMetrics(CollectorRegistry()),
        guard=loopback_guard(),
        senders=Senders({"webhook": sender, "mllp": sender}),
    )


@pytest.fixture
def worker(db: Database, clock: FakeClock, sender: RecordingSender) -> DeliveryWorker:
    return make_worker(db, clock, sender)


def setup(db: Database, *orderings: str, kind: str = "webhook", **config: object) -> tuple[Source, list[str]]:
    """A source subscribed to one destination per ordering given; returns the destination IDs."""
    with db.session() as session:
        world = make_org(session)
        env = world.envs["development"]
        source = make_source(session, env)
        ids = []
        for n, ordering in enumerate(orderings):
            destination = make_destination(session, env, kind=kind, name=f"d{n}", **config)
            make_subscription(session, source, destination, ordering=ordering)
            ids.append(destination.id)
        return source, ids


def send_logs(db: Database, source: Source, clock: FakeClock, count: int, **kwargs: object) -> list[str]:
    with db.session() as session:
        return [
            make_log(session, source, f"message {n}".encode(), received_at=clock(), **kwargs).id  # type: ignore[arg-type]
            for n in range(count)
        ]


def attempts_of(db: Database, log_id: str) -> list[Attempt]:
    with db.session() as session:
        query = sa.select(Attempt).join(Delivery).where(Delivery.log_id == log_id).order_by(Attempt.id)
        return list(session.scalars(query))


def status_of(db: Database, log_id: str) -> tuple[str, list[str]]:
    with db.session() as session:
        log = session.get(Log, log_id)
        assert log is not None
        statuses = session.scalars(sa.select(Delivery.status).where(Delivery.log_id == log_id)).all()
        return log.status, list(statuses)


def run(worker: DeliveryWorker) -> None:
    asyncio.run(worker.run_once())


def test_fails_three_times_then_recovers_with_numbered_attempts_on_schedule(
    db: Database, worker: DeliveryWorker, sender: RecordingSender, clock: FakeClock
) -> None:
    source, _ = setup(db, "fifo")
    t0 = clock()
    [log_id] = send_logs(db, source, clock, 1)
    sender.fail_next(3)
    run(worker)  # attempt 1 fails, attempt 2 right away ("immediately") fails, then +10 s
    assert [a.number for a in attempts_of(db, log_id)] == [1, 2]
    assert status_of(db, log_id) == ("received", ["pending"])
    clock.advance(9)
    run(worker)
    assert len(attempts_of(db, log_id)) == 2  # not due yet
    clock.advance(1)
    run(worker)  # attempt 3 fails, next in +10 s
    clock.advance(10)
    run(worker)  # attempt 4 succeeds
    attempts = attempts_of(db, log_id)
    assert [(a.number, a.outcome) for a in attempts] == [(1, "failed"), (2, "failed"), (3, "failed"), (4, "delivered")]
    assert [(a.started_at - t0).total_seconds() for a in attempts] == [0, 0, 10, 20]
    assert attempts[0].response_code == "503" and attempts[0].detail
    assert status_of(db, log_id) == ("delivered", ["delivered"])
    assert len(sender.sent) == 4


def test_fifo_messages_sent_during_an_outage_arrive_in_order_exactly_once(
    db: Database, worker: DeliveryWorker, sender: RecordingSender, clock: FakeClock
) -> None:
    source, _ = setup(db, "fifo")
    sender.fail_next(10**6)  # the destination is down
    log_ids = send_logs(db, source, clock, 5)
    run(worker)
    assert sender.payloads() == [b"message 0", b"message 0"]  # only the head is tried while it fails
    clock.advance(10)
    sender.fail_next(0)  # back up
    sender.sent.clear()
    run(worker)
    assert sender.payloads() == [f"message {n}".encode() for n in range(5)]
    assert all(status_of(db, log_id) == ("delivered", ["delivered"]) for log_id in log_ids)
    run(worker)
    assert len(sender.sent) == 5  # nothing sent twice


def test_parallel_subscription_is_not_blocked_by_a_failing_message(
    db: Database, sender: RecordingSender, clock: FakeClock
) -> None:
    def respond(_target: Target, message: Message) -> AttemptResult:
        return AttemptResult.retry("HTTP 500", "500") if message.payload == b"message 0" else DELIVERED

    sender.respond = respond
    worker = make_worker(db, clock, sender)
    source, _ = setup(db, "parallel")
    first, *rest = send_logs(db, source, clock, 3)
    run(worker)
    assert status_of(db, first) == ("received", ["pending"])
    assert all(status_of(db, log_id) == ("delivered", ["delivered"]) for log_id in rest)


def test_a_failing_fifo_destination_does_not_hold_back_another_subscription(
    db: Database, sender: RecordingSender, clock: FakeClock
) -> None:
    source, (down, up) = setup(db, "fifo", "fifo")
    sender.respond = lambda target, _m: AttemptResult.retry("refused") if target.id == down else DELIVERED
    worker = make_worker(db, clock, sender)
    send_logs(db, source, clock, 3)
    run(worker)
    assert sender.payloads(up) == [b"message 0", b"message 1", b"message 2"]
    assert sender.payloads(down) == [b"message 0", b"message 0"]


def test_gives_up_after_max_age(db: Database, sender: RecordingSender, clock: FakeClock) -> None:
    worker = make_worker(db, clock, sender, max_age=60)
    source, _ = setup(db, "fifo")
    t0 = clock()
    first, second = send_logs(db, source, clock, 2)
    sender.fail_next(10**6)
    for _ in range(10):
        run(worker)
        clock.advance(10)
    attempts = attempts_of(db, first)
    assert [(a.started_at - t0).total_seconds() for a in attempts] == [0, 0, 10, 20, 40, 60]
    assert status_of(db, first) == ("failed", ["failed"])
    # Given up is final: the FIFO lane moves on to the next message (already past max age: one attempt).
    assert status_of(db, second) == ("failed", ["failed"])
    assert len(attempts_of(db, second)) == 1


def test_a_final_refusal_fails_at_once_and_the_lane_moves_on(
    db: Database, sender: RecordingSender, clock: FakeClock
) -> None:
    sender.respond = lambda _t, m: (
        AttemptResult(AttemptOutcome.REJECTED, "AR", "MSA-1 AR") if m.payload == b"message 0" else DELIVERED
    )
    worker = make_worker(db, clock, sender)
    source, _ = setup(db, "fifo")
    first, second = send_logs(db, source, clock, 2)
    run(worker)
    assert [(a.number, a.outcome, a.response_code) for a in attempts_of(db, first)] == [(1, "rejected", "AR")]
    assert status_of(db, first) == ("failed", ["failed"])
    assert status_of(db, second) == ("delivered", ["delivered"])


def test_content_a_destination_cannot_carry_is_filtered_with_the_reason(
    db: Database, worker: DeliveryWorker, sender: RecordingSender, clock: FakeClock
) -> None:
    source, _ = setup(db, "fifo", kind="mllp", host="127.0.0.1", port=2575)
    [log_id] = send_logs(db, source, clock, 1)
    run(worker)
    [attempt] = attempts_of(db, log_id)
    assert attempt.outcome == "filtered" and "HL7v2 only" in (attempt.detail or "")
    assert status_of(db, log_id)[1] == ["filtered"]
    assert sender.sent == []


@pytest.mark.postgres
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_two_workers_share_one_fifo_lane_without_reordering_or_duplicates(db: Database, clock: FakeClock) -> None:
    sender = RecordingSender(delay=0.001)  # shared: its list is the order messages went out in
    source, (fifo, parallel) = setup(db, "fifo", "parallel")
    send_logs(db, source, clock, 60)
    workers = [make_worker(db, clock, sender), make_worker(db, clock, sender)]
    for w in workers:
        w.options = WorkerOptions(batch=7)  # small batches: the lane changes hands between workers

    async def drain(w: DeliveryWorker) -> None:
        for _ in range(500):
            if len(sender.sent) >= 120:
                return
            await w.run_once()
            await asyncio.sleep(0.001)

    async def both() -> None:
        await asyncio.gather(*(drain(w) for w in workers))

    asyncio.run(both())
    with db.session() as session:
        sequence = dict(session.execute(sa.select(Delivery.id, Delivery.sequence)).all())
    fifo_order = [sequence[m.delivery_id] for t, m in sender.sent if t.id == fifo]
    assert fifo_order == sorted(set(fifo_order)) and len(fifo_order) == 60  # in order, each once
    assert sum(1 for t, _ in sender.sent if t.id == parallel) == 60


def test_a_busy_fifo_lane_claims_its_own_next_batches(
    db: Database, sender: RecordingSender, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(db, clock, sender)
    worker.options = WorkerOptions(batch=3)
    claims: list[int] = []
    original = queue.claim

    def counting_claim(*args: object, **kwargs: object) -> list[queue.Lane]:
        lanes = original(*args, **kwargs)  # type: ignore[arg-type]
        claims.append(len(lanes))
        return lanes

    monkeypatch.setattr(queue, "claim", counting_claim)
    source, _ = setup(db, "fifo")
    send_logs(db, source, clock, 10)
    run(worker)
    assert sender.payloads() == [f"message {n}".encode() for n in range(10)]
    assert claims == [1]  # one scan of the queue; the lane took batches 2 to 4 itself


def test_claim_next_takes_the_lane_head_only_when_due_and_free(db: Database, clock: FakeClock) -> None:
    source, _ = setup(db, "fifo")
    send_logs(db, source, clock, 5)
    lease = timedelta(seconds=60)
    with db.session() as session:
        subscription_id, ids = _lane(session)
        assert queue.claim_next(session, subscription_id=subscription_id, now=clock(), lease=lease, batch=2) == ids[:2]
        # Held by that claim now: nobody else takes the head, not even the deliveries behind it.
        assert queue.claim_next(session, subscription_id=subscription_id, now=clock(), lease=lease, batch=2) == []
        queue.release(session, ids[:2])
        session.execute(sa.update(Delivery).where(Delivery.id == ids[0]).values(next_attempt_at=clock() + lease))
        # A head waiting for its retry holds back its lane.
        assert queue.claim_next(session, subscription_id=subscription_id, now=clock(), lease=lease, batch=2) == []
        later = clock() + lease + timedelta(seconds=1)
        assert queue.claim_next(session, subscription_id=subscription_id, now=later, lease=lease, batch=9) == ids


def _lane(session: sa.orm.Session) -> tuple[str, list[str]]:
    rows = session.execute(sa.select(Delivery.subscription_id, Delivery.id).order_by(Delivery.sequence)).all()
    assert rows and rows[0][0] is not None
    return rows[0][0], [row[1] for row in rows]


def test_a_paused_destination_holds_its_deliveries_and_resuming_sends_them_at_once(
    db: Database, worker: DeliveryWorker, sender: RecordingSender, clock: FakeClock
) -> None:
    source, [destination_id] = setup(db, "fifo")
    [log_id] = send_logs(db, source, clock, 1)

    def switch(enabled: bool) -> None:
        with db.session() as session:
            destination, environment = destinations.find(session, destination_id) or (None, None)
            assert destination is not None and environment is not None
            destinations.set_enabled(
                session, actor=CLI, destination=destination, environment=environment, enabled=enabled, now=clock()
            )

    switch(False)
    run(worker)
    assert sender.sent == [] and [a.detail for a in attempts_of(db, log_id)] == ["the destination is disabled"] * 2
    clock.advance(5)  # the next retry would be 5 s away
    switch(True)
    run(worker)
    assert sender.payloads() == [b"message 0"]
    assert status_of(db, log_id) == ("delivered", ["delivered"])
