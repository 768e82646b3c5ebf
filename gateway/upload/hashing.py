"""The uploaded file's digests: computed beside the stream (`Hashing`) and checked against the ones the client
supplied (`verify_digests`)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.errors import GatewayError
from gateway.upload.multipart import Segment
from gateway.upload.pump import hash_segments

# Below this, hashing on the event loop is cheaper than a hop to a worker thread.
THREAD_FEED_MIN = 64 * 1024
MAX_OUTSTANDING = 8
DIGEST_FIELDS = {"md5_digest": "md5", "sha256_digest": "sha256", "blake2_256_digest": "blake2_256"}


class Hashing:
    """The file's digests, computed beside the stream: one ordered thread per digest, never holding it up.

    sha256 and blake2b run side by side (hashlib releases the GIL on large buffers) while the next chunks are read
    and forwarded; at most MAX_OUTSTANDING chunks wait to be hashed.
    """

    def __init__(self, algorithms: set[str]) -> None:
        factories: dict[str, Callable[[], Any]] = {
            "md5": lambda: hashlib.md5(usedforsecurity=False),
            "sha256": hashlib.sha256,
            "blake2_256": lambda: hashlib.blake2b(digest_size=32),
        }
        self._hashers = {name: factories[name]() for name in sorted(algorithms)}
        self._lanes: list[ThreadPoolExecutor] = []
        self._outstanding: deque[asyncio.Future[list[None]]] = deque()

    async def feed(self, segments: Sequence[Segment]) -> None:
        if not segments:
            return
        hashers = list(self._hashers.values())
        if not self._lanes and sum(len(segment) for segment in segments) < THREAD_FEED_MIN:
            for hasher in hashers:
                hash_segments(hasher, segments)
            return
        if not self._lanes:
            self._lanes = [ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest") for _ in hashers]
        loop = asyncio.get_running_loop()
        lanes = zip(self._lanes, hashers, strict=True)
        jobs = [loop.run_in_executor(lane, hash_segments, hasher, segments) for lane, hasher in lanes]
        self._outstanding.append(asyncio.gather(*jobs))
        while len(self._outstanding) > MAX_OUTSTANDING:
            await self._outstanding.popleft()

    async def settled(self) -> list[Any]:
        """The hash states, once every segment fed so far is in them, for a pump to update directly."""
        while self._outstanding:
            await self._outstanding.popleft()
        return list(self._hashers.values())

    async def hexdigests(self) -> dict[str, str]:
        """The digests, once every segment fed so far is hashed."""
        while self._outstanding:
            await self._outstanding.popleft()
        return {name: hasher.hexdigest() for name, hasher in self._hashers.items()}

    def close(self) -> None:
        for lane in self._lanes:
            lane.shutdown(wait=False, cancel_futures=True)


def verify_digests(supplied: Mapping[str, str], computed: Mapping[str, str]) -> None:
    """Every digest the client supplied must match the bytes (PyPI's check), compared in constant time."""
    for name, value in supplied.items():
        if not hmac.compare_digest(value.lower(), computed.get(name, "")):
            raise GatewayError(
                400,
                "The digest supplied does not match a digest calculated from the uploaded file.",
                "digest_mismatch",
            )
