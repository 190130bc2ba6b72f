"""Alembic environment: the engine comes from the caller (healthway.storage.db.Database.migrate).

On SQLite, batch migrations copy a table and drop the old one; with foreign keys enforced, that drop cascades into
every child table (an ``ondelete=CASCADE`` child would lose its rows). So foreign keys are off while migrations run,
as SQLite's own ALTER TABLE procedure prescribes, and checked before the transaction commits.
"""

from alembic import context
from sqlalchemy import Connection

from healthway.storage.models import Base


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    # A pragma is a no-op inside a transaction: run it on the driver connection, before SQLAlchemy begins one.
    connection.connection.driver_connection.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")  # type: ignore[union-attr]


engine = context.config.attributes["engine"]
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        _sqlite_foreign_keys(connection, on=False)
    try:
        with connection.begin():
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=sqlite,  # SQLite cannot ALTER most things in place
            )
            context.run_migrations()
            if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                raise RuntimeError(f"a migration broke {len(broken)} foreign key(s); nothing was changed")
    finally:
        if sqlite:
            _sqlite_foreign_keys(connection, on=True)
