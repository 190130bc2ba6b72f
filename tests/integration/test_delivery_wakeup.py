"""One wake-up: a transaction that queues deliveries wakes the workers after it commits, whoever wrote it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from healthway.delivery.attempts import RetryPolicy
from healthway.delivery.metrics import DeliveryMetrics
from healthway.delivery.pg_listen import PgListener
from healthway.delivery.senders import Senders
from healthway.delivery.worker import DeliveryWorker
from healthway.domain.actors import CLI
from healthway.services import deliveries, replay
from healthway.storage import queue
from healthway.storage.db import Database
from healthway.storage.group_commit import GroupCommitter
from healthway.storage.models import utcnow
from healthway.testing import RecordingSender, loopback_guard
from tests.factories import make_destination, make_log, make_org, make_source, make_subscription


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.fixture
def woken(db: Database) -> Iterator[Counter]:
    counter = Counter()
    db.add_waker(counter)
    yield counter
    db.remove_waker(counter)


def test_a_commit_wakes_only_when_it_queued(db: Database, woken: Counter) -> None:
    with db.session() as session:
        world = make_org(session)
        source = make_source(session, world.envs["development"])
        destination = make_destination(session, world.envs["development"])
    assert woken.calls == 0  # nothing queued
    with db.session() as session:
        make_subscription(session, source, destination)
        make_log(session, source)  # intake routes it: one delivery queued
    assert woken.calls == 1
    with pytest.raises(RuntimeError):
        _queue_then_fail(db)
    assert woken.calls == 1  # rolled back: nothing was queued after all


def _queue_then_fail(db: Database) -> None:
    with db.session() as session:
        queue.announce(session)
        raise RuntimeError


def test_replay_and_resume_wake_without_the_caller_asking(db: Database, woken: Counter) -> None:
    with db.session() as session:
        env = make_org(session).envs["development"]
        source = make_source(session, env)
        destination = make_destination(session, env)
        make_subscription(session, source, destination)
        log = make_log(session, source)
    woken.calls = 0
    with db.session() as session:
        replay.replay(session, actor=CLI, log_id=log.id, now=utcnow())
    assert woken.calls == 1
    with db.session() as session:
        deliveries.resume(session, destination.id, now=utcnow() - timedelta(minutes=1))
    assert woken.calls == 2


def test_a_group_commit_batch_wakes_once_and_only_when_it_queued(db: Database, woken: Counter) -> None:
    async def main() -> None:
        committer = GroupCommitter(db)
        await committer.start()
        await committer.submit(lambda _session: None)
        assert woken.calls == 0
        await asyncio.gather(*(committer.submit(queue.announce) for _ in range(5)))
        await committer.stop()

    asyncio.run(main())
    assert 1 <= woken.calls <= 5  # once per committed batch (the five may share one)


def test_postgresql_listen_hears_another_process_and_stops_at_once(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    heard = threading.Event()
    listener = PgListener(db, heard.set)
    listener.start()
    assert heard.wait(10)  # the wake-up on connecting: anything committed while nobody listened
    heard.clear()
    other = Database(db.url.render_as_string(hide_password=False))  # another node or process, without wakers
    try:
        with other.session() as session:
            queue.announce(session)
    finally:
        other.dispose()
    assert heard.wait(10)
    started = time.monotonic()
    listener.stop()
    assert time.monotonic() - started < 0.25  # no polling interval to sit out


def test_a_running_worker_is_woken_by_commits_and_stops_listening_when_stopped(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("on PostgreSQL the LISTEN thread wakes the worker too (tested above)")
    with db.session() as session:
        env = make_org(session).envs["development"]
        source = make_source(session, env)
        make_subscription(session, source, make_destination(session, env))
    worker = DeliveryWorker(
        db=db,
        clock=utcnow,
        policy=RetryPolicy(max_age=timedelta(hours=1)),
        metrics=DeliveryMetrics(CollectorRegistry()),
        guard=loopback_guard(),
        senders=Senders({"webhook": RecordingSender()}),
    )
    worker.wake = woken = Counter()  # type: ignore[method-assign]  # what the worker registers at start

    def intake() -> None:
        with db.session() as session:
            make_log(session, source)

    async def main() -> None:
        await worker.start()
        await asyncio.to_thread(intake)
        assert woken.calls == 1
        await worker.stop()
        calls = woken.calls
        await asyncio.to_thread(intake)
        assert woken.calls == calls  # no longer registered

    asyncio.run(main())
