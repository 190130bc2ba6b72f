"""The intake door: every transport's messages come in by ``Intake.accept`` (or ``accept_many``).

A transport authenticates its peer, validates what it read and builds a ``Submission`` (HTTP in
``transports/http/data_endpoints.py``, HL7v2 frames in ``transports/mllp/frames.py``; files next); ``accept``
stores it as one Log row (raw bytes + metadata) with its deliveries and returns only once that is committed:
durable before acknowledged. Writes go through the group committer (one transaction and one fsync for every
message arriving meanwhile); a commit that queued deliveries wakes the delivery workers at once (``storage.db``'s
after-commit hook).

Duplicates (same source + Idempotency-Key or MSH-10 within 24 h) are answered with the original receipt and not
routed again; the same Idempotency-Key with a different body is refused.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.delivery_states import LogStatus
from healthway.errors import UnprocessableEntity
from healthway.services import deliveries
from healthway.storage.db import Database
from healthway.storage.group_commit import GroupCommitter
from healthway.storage.models import Log

T = TypeVar("T")
DEDUP_WINDOW = timedelta(hours=24)
LOGS = Log.metadata.tables["logs"]
MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True)
class Submission:
    """One inbound message, already authenticated and validated by its transport."""

    source_id: str
    environment_id: str
    transport: str  # http | mllp | sftp
    content_type: str
    payload: bytes
    received_at: datetime
    data_model: str | None = None
    event_type: str | None = None
    message_type: str | None = None
    control_id: str | None = None
    dedup_key: str | None = None  # Idempotency-Key (HTTP) or MSH-10 (MLLP/SFTP)
    request_sha256: str | None = None  # what the dedup key was first used for
    test: bool = False
    meta: dict[str, Any] | None = None
    destination_ids: list[str] | None = None
    routed: bool = True  # False for synchronous requests: answered at once, never delivered later
    response: dict[str, Any] | None = None  # a synchronous request's answer, kept with its log
    log_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class Receipt:
    log_id: str
    attempt_id: str
    duplicate: bool


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def find_duplicate(session: Session, submission: Submission) -> Log | None:
    if submission.dedup_key is None:
        return None
    return session.scalar(
        sa.select(Log)
        .where(
            Log.source_id == submission.source_id,
            Log.dedup_key == submission.dedup_key,
            Log.received_at > submission.received_at - DEDUP_WINDOW,
        )
        .order_by(Log.received_at)
        .limit(1)
    )


def _receipt(log: Log, *, duplicate: bool) -> Receipt:
    return Receipt(log.id, str((log.meta or {}).get("_attempt_id", log.id)), duplicate)


def store(session: Session, submission: Submission) -> Receipt:
    """Insert the log and route it, in the caller's transaction (the group commit's batch)."""
    existing = find_duplicate(session, submission)
    if existing is not None:
        if submission.request_sha256 and existing.request_sha256 != submission.request_sha256:
            raise UnprocessableEntity("this Idempotency-Key was already used with a different request")
        return _receipt(existing, duplicate=True)
    log = Log(
        id=submission.log_id,
        environment_id=submission.environment_id,
        source_id=submission.source_id,
        transport=submission.transport,
        content_type=submission.content_type,
        data_model=submission.data_model,
        event_type=submission.event_type,
        message_type=submission.message_type,
        control_id=submission.control_id,
        dedup_key=submission.dedup_key,
        request_sha256=submission.request_sha256,
        sha256=sha256(submission.payload),
        size=len(submission.payload),
        test=submission.test,
        meta={"request": submission.meta, "response": submission.response, "_attempt_id": str(uuid.uuid4())},
        payload=submission.payload,
        received_at=submission.received_at,
        status=LogStatus.RECEIVED,
    )
    # A Core insert: the log is never changed in this transaction, so the unit of work has nothing to track.
    session.execute(sa.insert(LOGS), {column.key: getattr(log, column.key) for column in LOGS.columns})
    if submission.routed:
        deliveries.route(session, log=log, destination_ids=submission.destination_ids)
    return _receipt(log, duplicate=False)


class Intake:
    """The door. ``committer`` is a part of the node (started and stopped with it). Routing queues deliveries,
    and queueing wakes the delivery workers once the batch commits (the Database's after-commit hook)."""

    def __init__(self, db: Database) -> None:
        self.committer = GroupCommitter(db)

    async def accept(self, submission: Submission) -> Receipt:
        """Store one message; returns once it is committed. Raises what ``store`` raises (and
        ``StorageUnavailable`` when the commit failed or the node is stopping)."""
        return await self.committer.submit(lambda session: store(session, submission))

    async def accept_many(self, submissions: Sequence[Submission]) -> list[Receipt]:
        """Store several messages all together or none of them (an SFTP batch file); returns once committed."""
        return await self.committer.submit(lambda session: [store(session, s) for s in submissions])

    async def commit(self, work: Callable[[Session], T]) -> T:
        """Run an intake use case's own unit of work (a synchronous request's log and answer) in the next batch;
        returns its result once committed."""
        return await self.committer.submit(work)
