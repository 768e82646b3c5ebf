"""Alembic's environment: the migrations run on the connection `gateway.store.schema` hands over, inside its
transaction (one transaction for a whole upgrade, on both backends: their DDL is transactional)."""

from __future__ import annotations

from alembic import context

from gateway.store.tables import metadata

context.configure(connection=context.config.attributes["connection"], target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
