"""The change listener on a real PostgreSQL: woken by NOTIFY, and again after its connection is killed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg

from gateway.store.listener import APPLICATION_NAME, CHANNEL, listen
from tests.harness.postgresql import Server


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


async def test_notifications_wake_and_a_killed_connection_reconnects_and_wakes(postgresql_server: Server) -> None:
    url = postgresql_server.create()
    woken: list[int] = []
    task = asyncio.create_task(listen(url, lambda: woken.append(1), keepalive=0.2))
    try:
        await until(lambda: len(woken) == 1)  # connected: one wake-up for what it may have missed
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as other:
            await other.execute(f"NOTIFY {CHANNEL}, '7'")
            await until(lambda: len(woken) == 2)
            await other.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (APPLICATION_NAME,),
            )
            await until(lambda: len(woken) == 3)  # reconnected, and woke for what it may have lost
            await asyncio.sleep(0.3)  # past a keepalive: the liveness query runs on the new connection
            await other.execute(f"NOTIFY {CHANNEL}, '8'")
            await until(lambda: len(woken) == 4)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_unreachable_server_is_retried_without_raising(postgresql_server: Server) -> None:
    url = postgresql_server.url("no_such_database")
    woken: list[int] = []
    task = asyncio.create_task(listen(url, lambda: woken.append(1)))
    await asyncio.sleep(0.5)
    assert not task.done() and woken == []
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
