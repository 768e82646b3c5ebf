"""How fast an upload body must arrive: a minimum rate once a grace period is over, and a deadline for all of it.

A trickle (a byte every few seconds) never trips a timeout between reads, yet holds a connection, a spool and,
when streamed, a request to the index for as long as it likes. So the rate is judged too, on "client time": the
time the gateway spent waiting for the client's bytes. While the gateway itself is busy (hashing, or waiting for
a slow index to take what it was sent) the client is not to blame, and its bytes pile up in the socket buffers to
be read at once later. The deadline runs on the wall clock from the body's start.

Pure logic, no I/O: `BodySource` (gateway.upload.source) feeds it what each read waited and got.
"""

from __future__ import annotations

from collections import deque

from gateway.config import ClientLimits
from gateway.errors import GatewayError

# Arrivals within this much client time of each other are kept as one, so a client sending tiny segments
# cannot grow the record: it holds at most one entry per second of the window.
BUCKET = 1.0


def rate_text(rate: int) -> str:
    return f"{rate // 1024} KiB/s" if rate % 1024 == 0 else f"{rate} bytes/s"


def duration_text(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


class Pace:
    """Whether an upload is fast enough: after `upload_grace` of client time, the bytes that arrived in the
    last `upload_grace` of client time must average `min_upload_rate`; all of it within `upload_deadline`."""

    def __init__(self, limits: ClientLimits, *, started: float) -> None:
        self._window = limits.upload_grace
        self._rate = limits.min_upload_rate
        self._needed = limits.min_upload_rate * limits.upload_grace
        self._deadline = started + limits.upload_deadline
        self._deadline_text = duration_text(limits.upload_deadline)
        self._waited = 0.0  # client time so far
        self._arrivals: deque[list[float]] = deque()  # [first, last arrival (client time), bytes], oldest first

    def arrived(self, waited: float, size: int) -> None:
        """A read that waited `waited` seconds for `size` bytes."""
        self._waited += waited
        now = self._waited
        if size:
            if self._arrivals and now - self._arrivals[-1][0] < BUCKET:
                self._arrivals[-1][1:] = [now, self._arrivals[-1][2] + size]
            else:
                self._arrivals.append([now, now, float(size)])
        while self._arrivals and self._arrivals[0][1] + self._window <= now:
            self._arrivals.popleft()

    def check(self, now: float, waiting: float = 0.0) -> None:
        """Raise the 408 a too slow or too long upload gets; `waiting` is client time of a read still waiting."""
        if now >= self._deadline:
            raise GatewayError(
                408,
                f"Request timeout: the upload did not arrive within {self._deadline_text}; "
                "upload over a faster connection",
                "upload_deadline",
            )
        if self._too_slow_at() <= self._waited + waiting:
            raise GatewayError(
                408,
                f"Request timeout: the upload arrived slower than {rate_text(self._rate)} over "
                f"{duration_text(self._window)}; upload over a faster connection",
                "upload_too_slow",
            )

    def patience(self, now: float, waiting: float = 0.0) -> float:
        """Seconds a read may still wait for the client (from `now`, having waited `waiting`) before `check`
        refuses the upload, should nothing arrive."""
        return max(0.0, min(self._deadline - now, self._too_slow_at() - self._waited - waiting))

    def _too_slow_at(self) -> float:
        """The client time at which, with nothing more arriving, the window would hold too few bytes."""
        at = max(self._waited, self._window)
        staying = [(last + self._window, size) for _, last, size in self._arrivals if last + self._window > at]
        left = sum(size for _, size in staying)
        for leaves, size in staying:
            if left < self._needed:
                return at
            left, at = left - size, leaves
        return at
