"""What a test reads or changes in a store's database behind the store's back, on either backend: a small
synchronous SQLAlchemy engine on the store's own URL (pysqlite, or psycopg 3), one connection per call."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

BACKENDS = ["sqlite", "postgresql"]


def _sync_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def rows(url: str, sql: str, **parameters: Any) -> list[tuple[Any, ...]]:
    """The rows of a query (`:name` parameters), as tuples."""
    engine = create_engine(_sync_url(url), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            return [tuple(row) for row in connection.execute(text(sql), parameters)]
    finally:
        engine.dispose()


def execute(url: str, sql: str, **parameters: Any) -> None:
    """A statement, committed."""
    engine = create_engine(_sync_url(url), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(text(sql), parameters)
    finally:
        engine.dispose()
