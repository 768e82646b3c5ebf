"""The throttle every password and code check goes through: the account pages, password uploads, and password
reads of a private index.

An attempt is counted in the store before its check runs, so however many arrive at once, in however many
processes, at most the limits are ever checked; the rest are answered 429 with Retry-After and cost nothing.
Second-factor checks of one pending sign-in also run one at a time. The rules are `gateway.throttle`'s.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from gateway import crypto
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.store import Store
from gateway.throttle import Counted, Keys, Rules, Scope, refusal, retry_after

T = TypeVar("T")
log = logging.getLogger("gateway.throttle")
HOLD_LIFETIME = 30.0  # a second-factor check takes milliseconds; a hold left by a dead process lapses
PURGE_INTERVAL = 60.0
Surface = Literal["web", "upload", "read"]


@dataclass(frozen=True)
class _Reserved:
    keys: Keys
    pair: Counted
    account: Counted
    address: Counted


class Guard:
    def __init__(self, store: Store, rules: Rules, metrics: Metrics, *, server_secret: bytes) -> None:
        self._store = store
        self._rules = rules
        self._metrics = metrics
        self._key = crypto.subkey(server_secret, "throttle-keys")
        self._purged = 0.0

    def keys(self, account: str, address: str | None) -> Keys:
        return Keys.of(account, address, key=self._key)

    async def attempt(
        self,
        account: str,
        address: str | None,
        check: Callable[[], Awaitable[T]],
        *,
        kind: str,
        surface: Surface,
        final: bool,
        hold: str | None = None,
    ) -> T:
        """Count the attempt, run `check`, then settle: a falsy result is a failure and stays counted.

        A success is taken back from every counter; when `final` (nothing more to prove) it also clears the
        streak of this account from this address. `hold`: a key under which one check at a time may run (a
        pending sign-in's second factor); a second one meanwhile gets 429 at once, uncounted.
        """
        now = time.time()
        holder = uuid.uuid4().hex
        if hold is not None and not await self._store.take_hold(f"hold:{hold}", holder, now, HOLD_LIFETIME):
            self._metrics.throttled.labels(kind, "in_progress").inc()
            raise GatewayError(
                429,
                "Another code for this sign-in is being checked right now: wait a moment, then try again",
                "second_factor_busy",
                headers={"Retry-After": "1"},
            )
        try:
            reserved = await self._reserve(self.keys(account, address), now, holder, kind)
            try:
                result = await check()
            except Exception:
                await self._refund(reserved.keys)  # never checked (the password pool was full, say)
                raise
            if result and final:
                await self.completed(account, address)
                await self._refund_buckets(reserved.keys)
            elif result:
                await self._refund(reserved.keys)
            else:
                await self._failed(reserved, account, address, kind, surface)
            return result
        finally:
            if hold is not None:
                await self._store.release_hold(f"hold:{hold}", holder)

    async def completed(self, account: str, address: str | None) -> None:
        """A sign-in or upload that proved everything: this account's streak from this address ends."""
        await self._store.clear_streak(self.keys(account, address).pair)

    async def _reserve(self, keys: Keys, now: float, holder: str, kind: str) -> _Reserved:
        await self._purge(now)
        rules, store = self._rules, self._store
        # Waits are counted from when the answer came (time.time()), not from `now`: other attempts may have
        # been counted in between, with later times.
        pair = await store.reserve_streak(keys.pair, rules.pair, now, holder)
        if not pair.granted:
            seconds = rules.pair.wait(int(pair.value), pair.at, time.time())
            raise self._refused(kind, Scope.ACCOUNT_ADDRESS, seconds)
        account = await store.reserve_bucket(keys.account, rules.account, now, holder)
        if not account.granted:
            await store.refund_streak(keys.pair, rules.pair, now)
            raise self._refused(kind, Scope.ACCOUNT, rules.account.wait(account.value, account.at, time.time()))
        address = await store.reserve_bucket(keys.address, rules.address, now, holder)
        if not address.granted:
            await store.refund_streak(keys.pair, rules.pair, now)
            await store.refund_bucket(keys.account)
            raise self._refused(kind, Scope.ADDRESS, rules.address.wait(address.value, address.at, time.time()))
        return _Reserved(keys, pair, account, address)

    def _refused(self, kind: str, scope: Scope, seconds: float) -> GatewayError:
        self._metrics.throttled.labels(kind, scope.value).inc()
        wait = retry_after(seconds)
        return GatewayError(429, refusal(scope, wait), "throttled", headers={"Retry-After": str(wait)})

    async def _refund(self, keys: Keys) -> None:
        await self._store.refund_streak(keys.pair, self._rules.pair, time.time())
        await self._refund_buckets(keys)

    async def _refund_buckets(self, keys: Keys) -> None:
        await self._store.refund_bucket(keys.account)
        await self._store.refund_bucket(keys.address)

    async def _failed(
        self, reserved: _Reserved, account: str, address: str | None, kind: str, surface: Surface
    ) -> None:
        """The failure stays counted; when it filled a counter, the lock it starts is logged and audited (once,
        not per refusal that follows, so a flood of refused attempts writes nothing). The log line leaves out
        the name typed (it may be a password typed in the wrong field); the audit trail has it."""
        rules, now = self._rules, time.time()
        locks: list[tuple[Scope, float]] = []
        if rules.pair.delay(int(reserved.pair.value)) > 0:
            locks.append((Scope.ACCOUNT_ADDRESS, rules.pair.wait(int(reserved.pair.value), reserved.pair.at, now)))
        for scope, rule, counted in (
            (Scope.ACCOUNT, rules.account, reserved.account),
            (Scope.ADDRESS, rules.address, reserved.address),
        ):
            if rule.full(counted.value):
                locks.append((scope, rule.wait(counted.value, counted.at, now)))
        for scope, seconds in locks:
            self._metrics.throttle_locks.labels(scope.value).inc()
            log.warning(
                "throttle lock began",
                extra={"scope": scope.value, "kind": kind, "client": address, "seconds": retry_after(seconds)},
            )
            await self._store.audit(
                f"{surface}.throttled",
                user_name=account[:60],
                address=address,
                kind=kind,
                scope=scope.value,
                seconds=retry_after(seconds),
            )

    async def _purge(self, now: float) -> None:
        if now - self._purged < PURGE_INTERVAL:
            return
        self._purged = now
        rules = self._rules
        await self._store.purge_throttle(
            now,
            streaks_before=now - rules.pair.max_lock - rules.pair.forget,
            buckets_before=now - max(rules.account.window, rules.address.window),
        )
