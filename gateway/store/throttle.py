"""Throttle counters (streaks of failures, leaky buckets) and second-factor holds (issue #13); keys are keyed
hashes (`gateway.throttle`)."""

from __future__ import annotations

from sqlalchemy import text

from gateway.store.connection import Connection
from gateway.throttle import Bucket, Counted, Streak


class Throttle(Connection):
    # ---- Throttle counters and holds (issue #13) ------------------------------------------------------------
    # The rules are gateway/throttle.py's. Each reservation is one statement, an upsert whose conflict locks the
    # row: concurrent attempts, in any process or replica, are counted one after the other, and each learns
    # whether it was counted before anything is checked. Each is a transaction of its own.

    async def reserve_streak(self, key: str, rule: Streak, now: float, holder: str) -> Counted:
        """Count one more failure in a row, unless the streak is locked (then nothing changes)."""
        params = {"key": key, "now": now, "holder": holder, "forget": rule.forget, **_streak_params(rule)}
        (row,) = await self._returning(_RESERVE_STREAK, params)
        return Counted(bool(row["granted"]), float(row["failures"]), float(row["last"]))

    async def refund_streak(self, key: str, rule: Streak, now: float) -> None:
        """Take back one counted attempt (it succeeded, or was never checked); its lock, if it set one, ends now."""
        await self._execute(_REFUND_STREAK, {"key": key, "now": now, **_streak_params(rule)})

    async def clear_streak(self, key: str) -> None:
        await self._execute(text("DELETE FROM throttle_streaks WHERE key = :key"), {"key": key})

    async def reserve_bucket(self, key: str, rule: Bucket, now: float, holder: str) -> Counted:
        """Add one attempt to a leaky bucket, unless it would overflow (then nothing changes)."""
        params = {"key": key, "now": now, "holder": holder, "rate": rule.rate, "limit": rule.limit}
        (row,) = await self._returning(_RESERVE_BUCKET, params)
        return Counted(bool(row["granted"]), float(row["level"]), float(row["at"]))

    async def refund_bucket(self, key: str) -> None:
        await self._execute(
            text("UPDATE throttle_buckets SET level = CASE WHEN level > 1 THEN level - 1 ELSE 0 END WHERE key = :key"),
            {"key": key},
        )

    async def take_hold(self, key: str, holder: str, now: float, lifetime: float) -> bool:
        """A mutex across processes; one left by a process that died lapses after `lifetime`."""
        rows = await self._returning(
            text(
                "INSERT INTO throttle_holds (key, holder, expires) VALUES (:key, :holder, :expires) "
                "ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, expires = excluded.expires "
                "WHERE throttle_holds.expires <= :now RETURNING holder"
            ),
            {"key": key, "holder": holder, "expires": now + lifetime, "now": now},
        )
        return bool(rows) and rows[0]["holder"] == holder

    async def release_hold(self, key: str, holder: str) -> None:
        await self._execute(
            text("DELETE FROM throttle_holds WHERE key = :key AND holder = :holder"), {"key": key, "holder": holder}
        )

    async def purge_throttle(self, now: float, *, streaks_before: float, buckets_before: float) -> None:
        """Drop counters that no longer hold anything back (each is as good as absent), and lapsed holds."""
        async with self._transaction():
            await self._execute(text("DELETE FROM throttle_streaks WHERE last < :before"), {"before": streaks_before})
            await self._execute(text("DELETE FROM throttle_buckets WHERE at < :before"), {"before": buckets_before})
            await self._execute(text("DELETE FROM throttle_holds WHERE expires < :now"), {"now": now})


def _streak_delay(failures: str) -> str:
    """`Streak.delay` in SQL, of the column or expression `failures` (integers only: no overflow, any engine)."""
    return (
        f"(CASE WHEN {failures} < :limit THEN 0 WHEN {failures} >= :cap THEN :max_lock "
        f"ELSE CAST(:lock AS BIGINT) << CAST({failures} - :limit AS INTEGER) END)"
    )


def _streak_params(rule: Streak) -> dict[str, int]:
    return {"limit": rule.limit, "cap": rule.cap, "lock": rule.lock, "max_lock": rule.max_lock}


# The statements are put together from the fixed fragments above only; every value is a bound parameter.
_DELAY = _streak_delay("throttle_streaks.failures")
# Below the limit nothing locks, whatever the times: attempts from several connections (replicas) reach the
# database in another order than their `now`s, and an earlier `now` after a later `last` must not read as a lock.
_UNLOCKED = f"(throttle_streaks.failures < :limit OR :now >= throttle_streaks.last + {_DELAY})"
_RESERVE_STREAK = text(
    "INSERT INTO throttle_streaks (key, failures, last, holder) VALUES (:key, 1, :now, :holder) "  # noqa: S608
    "ON CONFLICT (key) DO UPDATE SET "
    f"failures = CASE WHEN NOT ({_UNLOCKED}) THEN throttle_streaks.failures "
    f"WHEN :now >= throttle_streaks.last + {_DELAY} + :forget THEN 1 "
    "WHEN throttle_streaks.failures < :cap THEN throttle_streaks.failures + 1 ELSE :cap END, "
    f"last = CASE WHEN {_UNLOCKED} THEN :now ELSE throttle_streaks.last END, "
    f"holder = CASE WHEN {_UNLOCKED} THEN :holder ELSE throttle_streaks.holder END "
    "RETURNING holder = :holder AS granted, failures, last"
)
_REFUND_STREAK = text(
    "UPDATE throttle_streaks SET failures = failures - 1, "  # noqa: S608
    f"last = :now - {_streak_delay('(failures - 1)')} WHERE key = :key AND failures > 0"
)
_DRAINED = (
    "(CASE WHEN :now <= throttle_buckets.at THEN throttle_buckets.level "
    "WHEN throttle_buckets.level - (:now - throttle_buckets.at) * :rate > 0 "
    "THEN throttle_buckets.level - (:now - throttle_buckets.at) * :rate ELSE 0 END)"
)
_FITS = f"{_DRAINED} + 1 <= :limit"
_RESERVE_BUCKET = text(
    "INSERT INTO throttle_buckets (key, level, at, holder) VALUES (:key, 1, :now, :holder) "  # noqa: S608
    "ON CONFLICT (key) DO UPDATE SET "
    f"level = CASE WHEN {_FITS} THEN {_DRAINED} + 1 ELSE throttle_buckets.level END, "
    f"at = CASE WHEN {_FITS} THEN :now ELSE throttle_buckets.at END, "
    f"holder = CASE WHEN {_FITS} THEN :holder ELSE throttle_buckets.holder END "
    "RETURNING holder = :holder AS granted, level, at"
)


# ---- end of the throttle's part of the store
