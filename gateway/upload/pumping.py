"""The flow's side of a pump (`pump`): whether the rest of a body is worth a thread, handing it over, and
waiting for the thread to end before anything it uses is closed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.upload.context import UploadContext
from gateway.upload.filecopy import FileCopy
from gateway.upload.form import FormReader
from gateway.upload.hashing import Hashing
from gateway.upload.multipart import Segment
from gateway.upload.pump import Handoff, Pump, hash_segments
from gateway.upload.source import BodySource

# A remainder of at least this much goes through a pump's thread (below it, the hop costs more than it saves).
PUMP_MIN = 2**20


class Pumping:
    """One upload's pump, if it gets one; `pumped` counts the body bytes its thread read."""

    def __init__(self, context: UploadContext, source: BodySource, form: FormReader) -> None:
        self.context = context
        self.source = source
        self.form = form
        self.pumped = 0  # body bytes a pump's thread read
        self._pumping: tuple[Pump, asyncio.Future[list[Segment]]] | None = None

    def pumpable(self) -> bool:
        """Whether the rest of the body is worth a pump's thread: a large remainder, over plain sockets."""
        return (
            self.context.pumps is not None
            and self.source.length - self.source.received >= PUMP_MIN
            and self.source.detachable()
        )

    async def run(
        self,
        handoff: Handoff,
        pending: list[Segment],
        *,
        hashing: Hashing | None,
        copy: FileCopy | None,
        check: Callable[[], None],
    ) -> list[Segment]:
        """The rest of the body through a pump's thread (`pump`); what is not sent yet (the last chunk)."""
        assert handoff.socket is not None and self.context.pumps is not None and hashing is not None
        index = handoff.socket
        try:
            client, buffered = self.source.detach()
        except BaseException:
            index.close()
            raise
        pump = Pump(
            client=client,
            index=index,
            source=self.source,
            form=self.form,
            hashers=[],
            copy=copy,
            check=check,
            write_timeout=self.context.upstream_timeout,
        )
        try:
            segments = self.form.feed(buffered) if buffered else []
            check()
            pump.hashers = await hashing.settled()
            if segments:
                for hasher in pump.hashers:
                    hash_segments(hasher, segments)
                if copy is not None:
                    copy.write(segments)
                pending = [*pending, *segments]
        except BaseException:
            client.close()
            index.close()
            raise
        started = self.source.received  # before the thread starts: it counts what it reads there
        job = asyncio.get_running_loop().run_in_executor(self.context.pumps, pump.run, pending)
        self._pumping = (pump, job)
        try:
            return await asyncio.shield(job)
        finally:
            try:
                await self.stop()
            finally:
                handoff.sent = pump.sent
                self.pumped = self.source.received - started

    async def stop(self) -> None:
        """Wait for the pump's thread to end, telling it to stop if it still runs (the gateway stopping, or the
        index's request given up while its body was sent): nothing it uses may be closed under it."""
        if self._pumping is None:
            return
        pump, job = self._pumping
        cancelled = False
        while not job.done():
            pump.stopped.set()  # seen within POLL seconds
            try:
                await asyncio.shield(asyncio.wait([job]))
            except asyncio.CancelledError:
                cancelled = True  # aiohttp cancels a writer more than once: the thread is waited for all the same
        if not job.cancelled():
            job.exception()  # retrieved here, raised (if it is still wanted) where the job was awaited
        self._pumping = None
        if cancelled:
            raise asyncio.CancelledError
