"""Alembic environment: runs on the connection Livecast hands it (see store/db.py)."""

from alembic import context

from livecast.store.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `livecast db upgrade`")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
