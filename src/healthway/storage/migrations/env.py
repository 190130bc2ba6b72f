"""Alembic environment: the engine comes from the caller (healthway.storage.db.Database.migrate)."""

from alembic import context

from healthway.storage.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things in place
    )
    context.run_migrations()
