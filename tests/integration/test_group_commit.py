"""The group committer: one transaction per batch, failures isolated to their unit, nothing half-written."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.errors import HealthwayError, InvalidRequest, StorageUnavailable
from healthway.storage.db import Database
from healthway.storage.group_commit import GroupCommitter, Work
from healthway.storage.models import Log
from tests.factories import make_org, make_source


def _log_writer(db: Database) -> tuple[str, str]:
    with db.session() as session:
        world = make_org(session)
        source = make_source(session, world.envs["development"])
        return source.id, world.envs["development"].id


def _count(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(Log)) or 0)


def test_concurrent_units_share_batches_and_failures_stay_isolated(db: Database) -> None:
    source_id, env_id = _log_writer(db)
    batches: list[int] = []

    def unit(i: int):  # type: ignore[no-untyped-def]
        def work(session: Session) -> int:
            session.add(
                Log(
                    environment_id=env_id,
                    source_id=source_id,
                    transport="http",
                    content_type="x",
                    sha256="0" * 64,
                    size=1,
                    payload=b"x",
                    control_id=str(i),
                )
            )
            session.flush()
            if i % 10 == 3:
                raise InvalidRequest(f"unit {i} refused")  # after writing: its rows must not survive
            return i

        return work

    async def main() -> list[object]:
        committer = GroupCommitter(db)
        original = committer._commit

        def counted(works: list[Work]) -> Any:
            batches.append(len(works))
            return original(works)

        committer._commit = counted  # type: ignore[method-assign]
        await committer.start()
        results = await asyncio.gather(*(committer.submit(unit(i)) for i in range(50)), return_exceptions=True)
        await committer.stop()
        return results

    results = asyncio.run(main())
    refused = [i for i, r in enumerate(results) if isinstance(r, InvalidRequest)]
    assert refused == [i for i in range(50) if i % 10 == 3]
    assert [r for r in results if not isinstance(r, Exception)] == [i for i in range(50) if i % 10 != 3]
    assert _count(db) == 45
    assert max(batches) > 1  # concurrent submissions were committed together


def test_a_unit_breaking_a_constraint_fails_alone(db: Database) -> None:
    source_id, env_id = _log_writer(db)

    def unit(source: str):  # type: ignore[no-untyped-def]
        def work(session: Session) -> None:
            session.add(
                Log(
                    environment_id=env_id,
                    source_id=source,
                    transport="http",
                    content_type="x",
                    sha256="0" * 64,
                    size=1,
                    payload=b"x",
                )
            )

        return work

    async def main() -> list[object]:
        committer = GroupCommitter(db)
        await committer.start()
        results = await asyncio.gather(
            committer.submit(unit(source_id)), committer.submit(unit("no-such-source")), return_exceptions=True
        )
        await committer.stop()
        return list(results)

    good, bad = asyncio.run(main())
    assert good is None and type(bad) is HealthwayError  # a 500 for the broken unit only
    assert _count(db) == 1


def test_an_unreachable_database_fails_every_unit_with_503() -> None:
    db = Database("postgresql://postgres@127.0.0.1:1/none")

    async def main() -> list[object]:
        committer = GroupCommitter(db)
        await committer.start()
        results = await asyncio.gather(
            *(committer.submit(lambda s: s.execute(sa.text("SELECT 1"))) for _ in range(3)), return_exceptions=True
        )
        await committer.stop()
        return list(results)

    assert all(isinstance(r, StorageUnavailable) and r.status_code == 503 for r in asyncio.run(main()))


def test_submit_after_stop_is_refused(db: Database) -> None:
    async def main() -> None:
        committer = GroupCommitter(db)
        await committer.start()
        await committer.stop()
        with pytest.raises(StorageUnavailable):
            await committer.submit(lambda session: None)

    asyncio.run(main())
