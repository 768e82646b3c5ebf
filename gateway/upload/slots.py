"""Caps on uploads in flight, per user and in all, taken on the headers before a byte of the body is read.

Each upload that reaches its file holds a connection to the index for as long as its client takes to send
it; without a cap, one user with many slow uploads holds every connection the index has and installs stop.
Counted per process (the connections they protect are per process too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from gateway.errors import GatewayError


class UploadSlots:
    def __init__(self, *, per_user: int, total: int) -> None:
        self.per_user = per_user
        self.total = total
        self._in_flight = 0
        self._by_user: dict[str, int] = {}

    @contextlib.contextmanager
    def any(self) -> Iterator[None]:
        """One of the `total` places, taken before authentication so a full gateway refuses cheaply."""
        if self._in_flight >= self.total:
            raise GatewayError(
                429,
                f"The gateway is receiving {self.total} uploads already, its limit: try again in a minute",
                "uploads_busy",
                headers={"Retry-After": "30"},
            )
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    @contextlib.contextmanager
    def of_user(self, user_id: str, user_name: str) -> Iterator[None]:
        held = self._by_user.get(user_id, 0)
        if held >= self.per_user:
            raise GatewayError(
                429,
                f"Too many uploads in flight for user '{user_name}': at most {self.per_user} at once; "
                "wait for one to finish",
                "too_many_uploads",
                headers={"Retry-After": "10"},
            )
        self._by_user[user_id] = held + 1
        try:
            yield
        finally:
            left = self._by_user[user_id] - 1
            if left:
                self._by_user[user_id] = left
            else:
                del self._by_user[user_id]
