"""The PostgreSQL the tests start: each test's database is its own, and empty."""

from __future__ import annotations

import psycopg

from tests.harness.postgresql import Server


def test_each_database_is_new_and_empty(postgresql_server: Server) -> None:
    first, second = postgresql_server.create(), postgresql_server.create()
    assert first != second
    with psycopg.connect(first) as connection:
        connection.execute("CREATE TABLE marker (id integer)")
    with psycopg.connect(second) as connection:
        tables = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    assert tables == []


def test_the_server_is_the_tests_own_with_durability_off(postgresql_server: Server) -> None:
    with psycopg.connect(postgresql_server.url()) as connection:
        row = connection.execute("SELECT current_setting('data_directory'), current_setting('fsync')").fetchone()
    assert row is not None
    data_directory, fsync = row
    assert data_directory.startswith(str(postgresql_server.directory))
    assert fsync == "off"
