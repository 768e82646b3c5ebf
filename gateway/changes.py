"""Following what other gateway processes changed: token revocations, user and project changes, and the read path's
cache purges, so that a replica never acts on a cached row another one has changed.

Every change another process must see is written to the store's change log, in the transaction that makes it,
under an increasing serial. A `Follower` reads what lies past the last serial it applied when it is woken (a
PostgreSQL notification, or its listener reconnecting) and on a short timer regardless: correctness never depends
on a notification arriving, only latency does (the pattern devpi's replicas use; `../shared/reference/scale-out.md`).
Applying a change only drops cached state, so applying one twice is harmless. When the log cannot be read for
longer than cached credentials may be trusted, the follower drops them (`forget_all`): a revocation it cannot see
must not be outlived by a cache. So it does whenever it may have missed entries: at its first read, after the host
slept past the log's keep, when the log's serial went back (a restored database), and after any error of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.store import Change, StoreFailure
from gateway.store.changelog import KINDS, PROJECT, TOKEN, USER

log = logging.getLogger("gateway.changes")

BATCH = 1000
# How often the log is read without a wake-up, and how long cached credentials outlive a log that cannot be read.
FOLLOW_INTERVAL = 1.0
FOLLOW_TRUST = 5.0
# Entries older than this are pruned (once an hour, by whichever process gets there): every follower read them.
KEEP = 86400.0
PRUNE_EVERY = 3600.0


class ChangeLog(Protocol):
    async def last_change(self) -> int: ...

    async def changes_after(self, serial: int, limit: int) -> Sequence[Change]: ...

    async def prune_changes(self, before: float) -> int: ...


class Caches(Protocol):
    def apply(self, change: Change) -> None: ...

    def forget_all(self) -> None: ...


@dataclass(frozen=True)
class Invalidations:
    """What each kind of change drops in this process, by its key (a token id, a user name folded to lower case, a
    project name); `credentials` drops every cached credential."""

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
        applied: Callable[[str], None] = lambda kind: None,
        failed: Callable[[], None] = lambda: None,
    ) -> None:
        """`applied(kind)` and `failed()` count, for the metrics."""
        self._log = log
        self._caches = caches
        self._applied = applied
        self._failed = failed
        self.interval = interval
        self._trust = trust
        self._clock = clock
        self._woken = asyncio.Event()
        self.serial: int | None = None
        self._read_at = clock()
        self._read_wall = time.time()
        self._pruned_at = clock()

    def wake(self) -> None:
        """Read the log now: a notification came, or the listener reconnected and may have missed some."""
        self._woken.set()

    async def run(self) -> None:
        while True:
            try:
                await self.catch_up()
            except Exception:
                # Not the store's failure (`catch_up` takes those): a bug or a row this version cannot read. The
                # follower goes on, since this process's caches are only safe while it does.
                log.exception("the change log's follower failed; cached credentials dropped")
                self._caches.forget_all()
            # `asyncio.timeout`, not `wait_for`: on Python 3.11 a wake-up in the turn of a cancel made `wait_for`
            # return and drop the cancel, and shutdown waited for the follower for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._woken.wait()
            self._woken.clear()

    async def catch_up(self) -> int:
        """Apply what is past the last serial applied; the number of changes applied. A store that fails is
        logged and retried on the next turn; past `trust` seconds without a read, cached credentials go."""
        try:
            applied = await self._read()
        except StoreFailure as exc:
            self._failed()
            log.warning("the change log cannot be read: %s", exc)
            if self._clock() - self._read_at > self._trust:
                self._caches.forget_all()  # each turn: what was cached meanwhile was read without the log
            return 0
        self._read_at = self._clock()
        if self._read_at - self._pruned_at > PRUNE_EVERY:
            self._pruned_at = self._read_at
            with contextlib.suppress(StoreFailure):  # the next hour's prune will do
                await self._log.prune_changes(time.time() - KEEP)
        return applied

    async def _read(self) -> int:
        slept = time.time() - self._read_wall > KEEP / 2  # the host slept: entries may be pruned unread
        if self.serial is None or slept:
            # What is older than this serial is never applied: what was cached before it was read (a request served
            # in the first moments, or while this read failed) goes instead.
            self.serial = await self._log.last_change()
            self._read_wall = time.time()
            self._caches.forget_all()
            return 0
        applied = 0
        while True:
            batch = await self._log.changes_after(self.serial, BATCH)
            for change in batch:
                self._caches.apply(change)
                self._applied(change.kind if change.kind in KINDS else "other")
                self.serial = change.serial
            applied += len(batch)
            if len(batch) < BATCH:
                break
        if not applied:
            latest = await self._log.last_change()
            if latest < self.serial:  # the database was restored or replaced: its serials restart below ours
                self.serial = latest
                self._caches.forget_all()
        self._read_wall = time.time()
        return applied
