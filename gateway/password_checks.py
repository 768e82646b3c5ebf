"""Password hashing on a pool of its own: a few threads and a short queue, and beyond that a refusal at once.

argon2 costs ~40 ms of a core and 12 MiB per check. Run on asyncio's default pool (which file I/O shares),
a flood of unauthenticated guesses would queue without bound and stall spooled uploads; here the work in
progress is bounded, and a check that finds no room is answered 503 with Retry-After at once.
Its threads also run at a lower CPU priority than the event loop, so the checks that do run slow nothing else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

from gateway.errors import GatewayError
from gateway.metrics import Metrics

T = TypeVar("T")
NICENESS = 10


def busy() -> GatewayError:
    return GatewayError(
        503,
        "The gateway is busy checking passwords: try again in a moment, or upload with an API token",
        "password_checks_busy",
        headers={"Retry-After": "2"},
    )


class PasswordChecks:
    def __init__(self, *, workers: int, queue: int, metrics: Metrics) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="password-check", initializer=_yield_to_the_loop
        )
        self._room = workers + queue
        self._taken = 0
        self._metrics = metrics

    def admit(self) -> None:
        """Refuse at once when there is no room: a caller can learn it before doing any other work."""
        if self._taken >= self._room:
            self._metrics.password_checks_refused.inc()
            raise busy()

    async def run(self, check: Callable[[], T]) -> T:
        """`check` on a hashing thread, or `busy()` raised when every thread and queue place is taken.

        A place is given back when the work ends, not when its caller stops waiting: a caller that goes away
        leaves a running check counted until it finishes, so the bound holds for the threads themselves.
        """
        self.admit()
        loop = asyncio.get_running_loop()
        self._take(1)
        try:
            future = self._pool.submit(check)
        except RuntimeError:  # shut down
            self._take(-1)
            raise busy() from None

        def give_back(_: concurrent.futures.Future[T]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing is counted any more
                loop.call_soon_threadsafe(self._take, -1)

        future.add_done_callback(give_back)
        return await asyncio.wrap_future(future)

    def _take(self, places: int) -> None:
        self._taken += places
        self._metrics.password_checks_pending.set(self._taken)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _yield_to_the_loop() -> None:
    """Hashing threads run at a lower CPU priority than the event loop (Linux schedules threads one by one), so a
    flood of password checks slows password checks, not token uploads and installs."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
