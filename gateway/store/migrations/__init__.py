"""The store's Alembic migrations (`versions/`, one revision a file, each running on SQLite and PostgreSQL), run by
`gateway.store.schema` with Alembic as a library: there is no alembic.ini."""
