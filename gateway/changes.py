"""Following what other gateway processes changed: token revocations, user and project changes, and the read path's
cache purges, so that a replica never acts on a cached row another one has changed.

Every change another process must see is written to the store's change log, in the transaction that makes it,
under an increasing serial. A `Follower` reads what lies past the last serial it applied when it is woken (a
PostgreSQL notification, or its listener reconnecting) and on a short timer regardless: correctness never depends
on a notification arriving, only latency does (the pattern devpi's replicas use; `../shared/reference/scale-out.md`).
Applying a change only drops cached state, so applying one twice is harmless. When the log cannot be read for
longer than cached credentials may be trusted, the follower drops them (`forget_all`): a revocation it cannot see
must not be outlived by a cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.store import StoreFailure

log = logging.getLogger("gateway.changes")

# What a change is about, and so which caches it invalidates; the key is a token id, a user id or a project name.
TOKEN = "token"  # noqa: S105 - a kind of change, not a secret
USER = "user"
PROJECT = "project"
KINDS = (TOKEN, USER, PROJECT)
BATCH = 1000


@dataclass(frozen=True)
class Change:
    serial: int
    kind: str
    key: str


class ChangeLog(Protocol):
    async def last_change(self) -> int: ...

    async def changes_after(self, serial: int, limit: int) -> Sequence[Change]: ...


class Caches(Protocol):
    def apply(self, change: Change) -> None: ...

    def forget_all(self) -> None: ...


@dataclass(frozen=True)
class Invalidations:
    """What each kind of change drops in this process; `credentials` drops every cached credential."""

    token: Callable[[str], None]
    user: Callable[[str], None]
    project: Callable[[str], None]
    credentials: Callable[[], None]

    def apply(self, change: Change) -> None:
        drop = {TOKEN: self.token, USER: self.user, PROJECT: self.project}.get(change.kind)
        if drop is None:
            # A kind this version does not know (a newer replica's, during an upgrade): drop what may depend on it.
            self.credentials()
        else:
            drop(change.key)

    def forget_all(self) -> None:
        self.credentials()


class Follower:
    """Apply the change log to this process's caches, from the serial current when it starts."""

    def __init__(
        self,
        log: ChangeLog,
        caches: Caches,
        *,
        interval: float,
        trust: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._caches = caches
        self.interval = interval
        self._trust = trust
        self._clock = clock
        self._woken = asyncio.Event()
        self.serial: int | None = None
        self._read_at = clock()

    def wake(self) -> None:
        """Read the log now: a notification came, or the listener reconnected and may have missed some."""
        self._woken.set()

    async def run(self) -> None:
        while True:
            await self.catch_up()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self.interval)
            self._woken.clear()

    async def catch_up(self) -> int:
        """Apply what is past the last serial applied; the number of changes applied. A store that fails is
        logged and retried on the next turn; past `trust` seconds without a read, cached credentials go."""
        try:
            applied = await self._read()
        except StoreFailure as exc:
            log.warning("the change log cannot be read: %s", exc)
            if self._clock() - self._read_at > self._trust:
                self._caches.forget_all()  # each turn: what was cached meanwhile was read without the log
            return 0
        self._read_at = self._clock()
        return applied

    async def _read(self) -> int:
        if self.serial is None:
            # Nothing is cached before the first read, so nothing older needs applying.
            self.serial = await self._log.last_change()
            return 0
        applied = 0
        while True:
            batch = await self._log.changes_after(self.serial, BATCH)
            for change in batch:
                self._caches.apply(change)
                self.serial = change.serial
            applied += len(batch)
            if len(batch) < BATCH:
                return applied
