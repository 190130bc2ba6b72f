"""Group commit: concurrent writers share one transaction (and one fsync) per batch.

Each caller submits a unit of work; a single writer task runs everything pending in one transaction, each unit
inside its own savepoint so one failure does not sink the batch. The next batch starts as soon as the previous
commit returns — no timer, no artificial delay — so under load batches grow by themselves. Every caller is
answered only after the commit that holds its rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.orm import Session

from healthway.errors import HealthwayError, InvalidRequest, StorageUnavailable
from healthway.storage.db import UNSTORABLE, Database

T = TypeVar("T")
Work = Callable[[Session], Any]
log = structlog.get_logger("healthway.intake")


class GroupCommitter:
    """An app Listener: started and stopped with the server."""

    name = "group_commit"

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[tuple[Work, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        self._wake = asyncio.Event()  # bound to the running loop
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    def is_up(self) -> bool:
        return self._task is not None and not self._task.done()

    async def submit(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in the next batch; returns its result once the batch is committed."""
        if not self.is_up():
            raise StorageUnavailable("the server is shutting down")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((work, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                outcomes = await asyncio.to_thread(self._commit, [work for work, _ in batch])
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if not future.done():
                        future.set_result(value) if ok else future.set_exception(value)
            if self._stopping and not self._pending:
                return

    def _commit(self, works: list[Work]) -> list[tuple[bool, Any]]:
        """Each unit's outcome.

        Fast path: the whole batch in one transaction. Should any unit fail, roll back and run the batch
        again with a savepoint per unit, so only the failing unit is refused (units are safe to re-run: they
        only read and write through the session)."""
        try:
            with self._db.session() as session:
                outcomes = [(True, work(session)) for work in works]
        except HealthwayError:
            pass
        except Exception:
            log.exception("group commit failed; retrying unit by unit", batch=len(works))
        else:
            return outcomes
        try:
            with self._db.session() as session:
                outcomes = [self._one(session, work) for work in works]
        except Exception as exc:  # the commit itself failed: nothing of this batch is stored
            log.exception("group commit failed", error=type(exc).__name__, batch=len(works))
            failure = StorageUnavailable("the message could not be stored; retry later")
            return [(False, failure)] * len(works)
        return outcomes

    @staticmethod
    def _one(session: Session, work: Work) -> tuple[bool, Any]:
        savepoint = session.begin_nested()
        try:
            result = work(session)
            savepoint.commit()
        except HealthwayError as exc:
            savepoint.rollback()
            return False, exc
        except OperationalError:  # the database itself failed: the whole batch does
            raise
        except DataError:  # a value the database refuses: this unit's input
            savepoint.rollback()
            return False, InvalidRequest(UNSTORABLE)
        except Exception:  # a bug in one unit must not sink the others of its batch
            savepoint.rollback()
            log.exception("intake unit failed")
            return False, HealthwayError()
        return True, result
