"""PostgreSQL's wake-ups for the change log: a dedicated connection that LISTENs, and calls `wake` on each
notification and after every (re)connect.

NOTIFY reaches only sessions listening at commit time: whatever was sent while this connection was down is lost,
which is why a (re)connect wakes too, and why the follower (`gateway.changes`) also reads on a timer. The
connection is its own, never a pooled one (a pool's connection loses its LISTEN when it is returned), and it
must reach PostgreSQL directly or through a session pool: behind PgBouncer in transaction mode LISTEN silently
does nothing, which costs latency (the timer still reads), never correctness. A server that closes or kills the
connection is noticed at once (its error arrives on the socket); one that vanishes is noticed by a query every
`keepalive` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

log = logging.getLogger("gateway.changes")

CHANNEL = "gateway_changes"
APPLICATION_NAME = "upload-gateway-listener"  # how an operator (or a test) finds it in pg_stat_activity
RETRY_FIRST, RETRY_MAX = 0.1, 5.0


async def listen(url: str, wake: Callable[[], None], *, keepalive: float = 5.0) -> None:
    """Until cancelled: listen on `url` (a libpq URL), reconnecting with a growing pause when it fails."""
    pause = RETRY_FIRST
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=5, application_name=APPLICATION_NAME
            ) as connection:
                await connection.execute(f"LISTEN {CHANNEL}")
                log.info("listening for changes")
                wake()  # what was sent while no one listened is read now
                pause = RETRY_FIRST
                while True:
                    async for _ in connection.notifies(timeout=keepalive):
                        wake()
                    await connection.execute("SELECT 1")
        except (psycopg.Error, OSError) as exc:
            log.warning("the change listener lost PostgreSQL (%s); reconnecting in %.1f s", type(exc).__name__, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, RETRY_MAX)
