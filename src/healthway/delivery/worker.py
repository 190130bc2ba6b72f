"""The delivery worker: an app Listener that drains the queue until the server stops.

Loop: claim due lanes (storage.queue) up to ``max_lanes`` in flight, process each lane in its own task, then wait
for a wake-up or the next retry time, capped. The wake-up is one hook: every transaction that queues deliveries
(intake, replay, resuming a destination) wakes the worker after it commits, through the Database's wakers in this
process and PostgreSQL NOTIFY for the other nodes; a lane finishing wakes it too. Looking for due lanes is a read;
only a find takes the write lock.

A lane's deliveries are sent one after another, in order; a FIFO lane stops at its first retryable failure (the
rest wait behind it). Results are recorded in one transaction per batch, and a FIFO lane that got through its
batch claims its next one in that same transaction, so a busy lane never waits for a scan of the whole queue.
A crash between a send and that commit means the message is sent again after restart: at-least-once, and still
in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry

from healthway.delivery.attempts import RetryPolicy, Sent
from healthway.delivery.lanes import Outgoing, load_outgoing, record_lane
from healthway.delivery.metrics import DeliveryMetrics
from healthway.delivery.senders import Senders, default_senders
from healthway.delivery.senders.sftp import HostKeyPins
from healthway.domain.delivery_states import AttemptOutcome
from healthway.domain.retry import AttemptResult
from healthway.domain.routing import carry_problem
from healthway.net.outbound import OutboundGuard
from healthway.storage import queue
from healthway.storage.db import Database
from healthway.storage.queue import Lane

if TYPE_CHECKING:
    from healthway.delivery.pg_listen import PgListener

log = structlog.get_logger("healthway.delivery")
Clock = Callable[[], datetime]
RECORD_TRIES = 8  # about 15 s of retries (on top of each try's own lock wait)
MAX_LANE_BYTES = 16 * 2**20  # payloads held in memory per lane; a lane always takes at least one message


@dataclass(frozen=True)
class WorkerOptions:
    # The longest sleep: another process writing to SQLite (a CLI replay) has no way to wake this one, nor has
    # another node on PostgreSQL while the LISTEN connection is down.
    poll_interval: float = 1.0
    lease: timedelta = timedelta(seconds=150)  # > lane_budget + one send timeout, so a live lease never expires
    lane_budget: float = 60.0  # seconds a lane keeps starting new sends
    max_lanes: int = 64  # lanes in flight at once
    batch: int = 100  # FIFO deliveries claimed at once
    claim_interval: float = 0.01  # while lanes are busy, look for other due lanes at most this often


class DeliveryWorker:
    name = "delivery"

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        policy: RetryPolicy,
        metrics: DeliveryMetrics,
        guard: OutboundGuard,
        senders: Senders | None = None,
        host_keys: HostKeyPins | None = None,
        options: WorkerOptions | None = None,
    ) -> None:
        """``senders`` defaults to the real ones behind ``guard`` (SFTP host keys pinned in ``host_keys``), made at
        ``start`` (so building a worker opens nothing)."""
        self.db, self.clock, self.policy, self.metrics = db, clock, policy, metrics
        self._guard = guard
        self._given_senders = senders
        self._host_keys = host_keys
        self.senders = senders or Senders({})
        self.options = options or WorkerOptions()
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lanes: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._listener: PgListener | None = None
        self._thread: threading.Thread | None = None

    # -- Listener ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Run the loop on its own thread and event loop: FIFO sends are sequential round trips, and they must
        not wait behind every HTTP request the server's own loop has queued."""
        self._stopping = False
        self.senders = self._given_senders or default_senders(self._guard, self._host_keys)
        if self.db.is_sqlite:
            await asyncio.to_thread(self._release_stale_leases)
        else:
            from healthway.delivery.pg_listen import PgListener  # noqa: PLC0415 (psycopg only for PostgreSQL)

            self._listener = PgListener(self.db, self.wake)
            self._listener.start()
        self.db.add_waker(self.wake)
        ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(ready),), name="delivery", daemon=True)
        self._thread.start()
        await asyncio.to_thread(ready.wait)

    async def _main(self, ready: threading.Event) -> None:
        self._loop, self._event = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        await self._run()
        if self._lanes:  # give in-flight sends a moment, then cut them off (their leases are given back)
            _, pending = await asyncio.wait(self._lanes, timeout=2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.senders.aclose()

    async def stop(self) -> None:
        self._stopping = True
        self.db.remove_waker(self.wake)
        self.wake()
        if self._listener is not None:
            await asyncio.to_thread(self._listener.stop)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    def is_up(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def wake(self) -> None:
        """Look for due deliveries now. Safe from any thread (intake runs in worker threads)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._event.set)

    # -- the loop ---------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            self._event.clear()
            try:
                claimed = await self._dispatch()
                if not claimed:
                    if self._lanes:  # busy lanes claim their own next batches; wake-ups can wait a moment
                        await asyncio.sleep(self.options.claim_interval)
                    await self._sleep(await asyncio.to_thread(self._seconds_until_due))
            except Exception:  # the database may be down for a while: keep trying, do not die
                log.exception("delivery loop failed; retrying")
                await self._sleep(self.options.poll_interval)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout=max(seconds, 0.001))

    async def _dispatch(self) -> int:
        free = self.options.max_lanes - len(self._lanes)
        if free <= 0:
            return 0
        lanes = await asyncio.to_thread(self._claim, free)
        for lane in lanes:
            task = asyncio.create_task(self._process(lane), name=f"lane-{lane.key}")
            self._lanes.add(task)
            task.add_done_callback(self._lane_done)
        return len(lanes)

    def _lane_done(self, task: asyncio.Task[None]) -> None:
        self._lanes.discard(task)
        self._event.set()  # the lane's next messages (or a free slot) may be waiting

    async def run_once(self) -> None:
        """Claim and process everything due now, and wait for it (tests drive the worker this way)."""
        self._loop = asyncio.get_running_loop()
        while await self._dispatch():
            await asyncio.gather(*self._lanes)

    # -- database steps (run in threads) --------------------------------------------------------------------
    def _release_stale_leases(self) -> None:
        with self.db.session() as session:
            if released := queue.release_all(session):
                log.info("released leases of a previous run", deliveries=released)

    def _claim(self, max_lanes: int) -> list[Lane]:
        now = self.clock()
        with self.db.read_session() as session:
            self.metrics.refresh(session, now)
            if not queue.any_due(session, now=now):
                return []
        with self.db.session() as session:
            return queue.claim(
                session, now=now, lease=self.options.lease, max_lanes=max_lanes, batch=self.options.batch
            )

    def _seconds_until_due(self) -> float:
        with self.db.read_session() as session:
            now = self.clock()
            due = queue.next_due(session, now=now)
            self.metrics.refresh(session, now)
        if due is None:
            return self.options.poll_interval
        return min(self.options.poll_interval, (due - now).total_seconds())

    # -- one lane -------------------------------------------------------------------------------------------
    async def _process(self, lane: Lane) -> None:
        """Send the lane's batches until it is empty, stuck behind a retry, or out of time."""
        deadline = time.monotonic() + self.options.lane_budget
        while lane.delivery_ids:
            results: list[Sent] = []
            try:
                results = await self._send_batch(lane, deadline)
            finally:
                # Also on cancellation (shutdown): record what was sent, give back the rest.
                go_on = self._continues(lane, results, deadline)
                next_ids = await asyncio.shield(self._record_safely(lane, results, go_on=go_on))
            lane = Lane(lane.key, lane.fifo, next_ids)

    async def _send_batch(self, lane: Lane, deadline: float) -> list[Sent]:
        results: list[Sent] = []
        for item in await asyncio.to_thread(self._load, lane.delivery_ids):
            if self._stopping or time.monotonic() > deadline:
                break
            started = self.clock()
            result = await self._attempt(item)
            results.append(Sent(item.delivery_id, result, started, self.clock()))
            if lane.fifo and result.outcome is AttemptOutcome.FAILED:
                break  # FIFO: nothing after this message is attempted before it is delivered or given up
        return results

    def _continues(self, lane: Lane, results: list[Sent], deadline: float) -> bool:
        """Whether a FIFO lane claims its next batch when it records this one."""
        if not lane.fifo or self._stopping or time.monotonic() > deadline or len(results) < len(lane.delivery_ids):
            return False
        return all(sent.result.outcome is not AttemptOutcome.FAILED for sent in results)

    async def _record_safely(self, lane: Lane, results: list[Sent], *, go_on: bool) -> list[str]:
        """Record (and, with ``go_on``, claim the lane's next batch), retrying while the database is busy or away:
        a lost record means the sends are repeated. Returns the next batch."""
        for attempt in range(RECORD_TRIES):
            try:
                return await asyncio.to_thread(self._record, lane, results, go_on)
            except Exception:  # after the last try the leases expire and the lane is retried: at-least-once
                if attempt == RECORD_TRIES - 1:
                    log.exception("recording delivery attempts failed", deliveries=len(lane.delivery_ids))
                    return []
                await asyncio.sleep(min(0.1 * 2**attempt, 5))
        return []

    async def _attempt(self, item: Outgoing) -> AttemptResult:
        started = time.perf_counter()
        result = await self._send(item)
        self.metrics.observe(item.target, result, time.perf_counter() - started)
        return result

    async def _send(self, item: Outgoing) -> AttemptResult:
        if problem := carry_problem(item.target.kind, item.message.content_type, item.message.payload):
            return AttemptResult(AttemptOutcome.FILTERED, None, problem)
        if not item.destination_enabled:
            return AttemptResult.retry("the destination is disabled")
        sender = self.senders.get(item.target.kind)
        if sender is None:
            return AttemptResult(AttemptOutcome.REJECTED, None, f"no sender for destination kind {item.target.kind!r}")
        try:
            return await sender.send(item.target, item.message)
        except Exception as exc:  # a sender bug must cost one attempt, not the worker
            log.exception("sender failed", destination_id=item.target.id)
            return AttemptResult.retry(f"internal error: {type(exc).__name__}")

    def _load(self, delivery_ids: list[str]) -> list[Outgoing]:
        with self.db.read_session() as session:
            return load_outgoing(session, delivery_ids, max_bytes=MAX_LANE_BYTES)

    def _record(self, lane: Lane, results: list[Sent], go_on: bool) -> list[str]:
        with self.db.session() as session:
            record_lane(session, lane.delivery_ids, results, policy=self.policy)
            if not go_on:
                return []
            options = self.options
            return queue.claim_next(
                session, subscription_id=lane.key, now=self.clock(), lease=options.lease, batch=options.batch
            )


def build_worker(
    *,
    db: Database,
    clock: Clock,
    metrics: CollectorRegistry,
    max_age_seconds: float,
    guard: OutboundGuard,
    host_keys: HostKeyPins,
    senders: Senders | None = None,
) -> DeliveryWorker:
    """The worker ``build()`` wires into every Healthway (it starts with the server)."""
    policy = RetryPolicy(max_age=timedelta(seconds=max_age_seconds))
    metrics_ = DeliveryMetrics(metrics)
    return DeliveryWorker(
        db=db, clock=clock, policy=policy, metrics=metrics_, guard=guard, senders=senders, host_keys=host_keys
    )
