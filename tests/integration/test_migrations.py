"""Migrations keep data: a populated database goes down to the first revision of this wave and back up with every
row where it was (on SQLite a batch table copy must not cascade into child tables)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from healthway.domain.actors import CLI
from healthway.services import oauth_keys
from healthway.services.oauth_keys import KeyMaterial
from healthway.storage.db import Database
from healthway.storage.models import Base
from healthway.testing import make_key_pair
from tests.factories import make_destination, make_log, make_org, make_source, make_subscription

SINCE = "0002c"  # the schema the previous release shipped
OLD_OUTCOMES = ["error", "failed", "delivered", "rejected", "filtered"]  # the worker's retries, a sync failure, ...


def _counts(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
            if t.name in names
        }


def test_a_populated_database_goes_down_and_up_without_losing_a_row(db: Database) -> None:
    with db.session() as session:
        world = make_org(session)
        env = world.envs["development"]
        source = make_source(session, env)
        material = KeyMaterial(jwks=make_key_pair("ES384").public_jwks)
        oauth_keys.create(session, actor=CLI, environment=env, material=material, source_ids=[source.id])
        destination = make_destination(session, env)
        make_subscription(session, source, destination)
        make_log(session, source, b"a message")
    before = _counts(db)
    assert before["memberships"] and before["personal_access_tokens"] and before["oauth_key_sources"]
    config = db._alembic_config()
    command.downgrade(config, SINCE)
    kept = _counts(db)
    command.upgrade(config, "head")
    after = _counts(db)
    assert {name: n for name, n in kept.items() if name in before} == {name: before[name] for name in kept}
    assert after == before


def test_attempts_written_as_error_become_failed(db: Database) -> None:
    """0004c: the one value for a failed attempt (domain.delivery_states.AttemptOutcome.FAILED)."""
    with db.session() as session:
        world = make_org(session)
        source = make_source(session, world.envs["development"])
        make_subscription(session, source, make_destination(session, world.envs["development"]))
        log = make_log(session, source)
    config = db._alembic_config()
    command.downgrade(config, "0003c")
    attempts = Base.metadata.tables["attempts"]
    with db.engine.begin() as conn:
        delivery_id = conn.execute(sa.text("SELECT id FROM deliveries WHERE log_id = :id"), {"id": log.id}).scalar_one()
        rows = [{"delivery_id": delivery_id, "number": n, "outcome": o} for n, o in enumerate(OLD_OUTCOMES, 1)]
        conn.execute(attempts.insert(), rows)
    command.upgrade(config, "head")
    with db.engine.connect() as conn:
        stored = conn.execute(sa.select(attempts.c.outcome).order_by(attempts.c.number)).scalars().all()
    assert stored == ["failed", "failed", "delivered", "rejected", "filtered"]
