"""``Intake``: the door every transport calls. ``accept_many`` stores a batch file's messages all or none."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from healthway.domain.messages import ContentType
from healthway.errors import UnprocessableEntity
from healthway.services.intake import Intake, Receipt, Submission
from healthway.storage.db import Database
from healthway.storage.models import Log
from tests.factories import make_org, make_source


def _submissions(db: Database, *keys: tuple[str, bytes]) -> list[Submission]:
    with db.session() as session:
        world = make_org(session)
        source = make_source(session, world.envs["development"])
        source_id, environment_id = source.id, source.environment_id
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Submission(
            source_id,
            environment_id,
            "sftp",
            ContentType.HL7V2,
            body,
            at,
            dedup_key=key,
            request_sha256=key + body.decode(),
        )
        for key, body in keys
    ]


def _accept_many(db: Database, submissions: list[Submission]) -> list[Receipt]:
    async def main() -> list[Receipt]:
        intake = Intake(db)
        await intake.committer.start()
        try:
            return await intake.accept_many(submissions)
        finally:
            await intake.committer.stop()

    return asyncio.run(main())


def _count(db: Database) -> int:
    with db.read_session() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(Log)) or 0)


def test_accept_many_stores_every_message_before_it_returns(db: Database) -> None:
    receipts = _accept_many(db, _submissions(db, ("1", b"MSH|a"), ("2", b"MSH|b"), ("3", b"MSH|c")))
    assert len({r.log_id for r in receipts}) == 3 and not any(r.duplicate for r in receipts)
    assert _count(db) == 3


def test_accept_many_stores_none_when_one_message_is_refused(db: Database) -> None:
    # The same duplicate key with another body is refused (422): the batch's other messages go with it.
    batch = _submissions(db, ("1", b"MSH|a"), ("2", b"MSH|b"), ("1", b"MSH|other"))
    with pytest.raises(UnprocessableEntity):
        _accept_many(db, batch)
    assert _count(db) == 0
