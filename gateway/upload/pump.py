"""The bulk of a large file moved from the client's socket to the index's by one worker thread.

Streamed on the event loop, each chunk of a file is copied by asyncio's read, again by aiohttp's parser and
again into the index connection's write buffer, handed to two other threads to be hashed (one hop each, and
the bytes leave the core's cache), and every step runs Python: that cost as much CPU again as the hashing
itself (issue #15). So once a large upload has been decided on, its flow asks for both connections' sockets
(duplicates of their descriptors) and a thread takes over: it reads into two buffers in turn, parses and hashes
each chunk where it lies, still in the cache, and writes the previous chunk to the index from the same memory.

The guarantees are the event loop's: the one multipart reader reads every byte; the index gets the file one
chunk behind the client, and the flow sends the last chunk only once it has checked the whole form; the
client's pace and timeouts are judged as on the loop (`ClientReads`); an index that takes nothing for
`upstream.timeout` is a timeout; memory is two buffers per upload. The thread owns the duplicate sockets and
closes them, so the reset that aborts the index's request (`proxy.aborting_socket`) is not held up by them.

Only plain TCP is handed over (TLS keeps its bytes inside the transports), and only for the bulk of a file:
small uploads never leave the loop.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from gateway.errors import GatewayError
from gateway.upload.filecopy import FileCopy
from gateway.upload.form import FormReader
from gateway.upload.multipart import Segment

BUFFER = 256 * 1024  # two of them stay in a core's cache beside the hash states
# How often a thread waiting on a socket looks whether its upload was abandoned (the gateway stopping).
POLL = 0.25
# Segments smaller than this together are sent in one write (see `UploadBody`).
COALESCE = 64 * 1024


DETACHED = web.RequestKey("detached", bool)


def detachable(request: web.Request) -> bool:
    """Whether the request's body can be read from its socket directly: plain TCP (TLS keeps its bytes in the
    transport)."""
    transport = request.transport
    return (
        transport is not None
        and transport.get_extra_info("sslcontext") is None
        and transport.get_extra_info("socket") is not None
    )


def detach(request: web.Request) -> tuple[socket.socket, bytes]:
    """Stop aiohttp reading the connection: a duplicate of its socket, and what aiohttp had read of the body
    already (all of it, so that no byte is read twice or skipped). aiohttp's reader is ended, so that it does not
    wait for the rest after the answer, and the connection closes after this request: its parser is mid-body.

    Reading aiohttp's buffer may make its parser pass on bytes it held back, and resumes the transport (as ending
    the reader does); all of that happens in this one step, before the event loop could read the socket again,
    and the transport is paused last.
    """
    transport = request.transport
    assert transport is not None  # `detachable`
    transport.pause_reading()
    buffered = bytearray()
    while data := request.content.read_nowait():
        buffered += data
    request.content.feed_eof()
    transport.pause_reading()
    request.protocol.close()
    request[DETACHED] = True
    return _nonblocking(transport.get_extra_info("socket").dup()), bytes(buffered)


def ends_connection(request: web.Request) -> bool:
    """Whether the answer must close the connection: the body was not read to its end (a refusal on the
    headers: the rest is not read), or it was read past aiohttp."""
    return request.get(DETACHED, False) or not request.content.is_eof()


class IndexGone(Exception):
    """The index closed its connection while it was sent the file: the flow stops sending and reads its answer."""


class ClientReads(Protocol):
    """Where the client's bytes come from, with the pace and timeouts of the event loop's reads."""

    length: int
    received: int

    def recv_into(self, sock: socket.socket, buffer: bytearray, want: int, stopped: threading.Event) -> int: ...


@dataclass
class Handoff:
    """The body's request to the index's connection (`UploadBody`) for its socket itself: a duplicate of its
    descriptor, or None when it cannot be written to directly; then what was sent on it."""

    socket: socket.socket | None = None
    sent: int = 0


@dataclass
class Pump:
    """One upload's thread: `run` reads the rest of the body and sends all of the file but its last chunk."""

    client: socket.socket
    index: socket.socket
    source: ClientReads
    form: FormReader
    hashers: Sequence[Any]
    copy: FileCopy | None
    check: Callable[[], None]  # the flow's checks after each chunk (the file no longer than its request allows)
    write_timeout: float
    stopped: threading.Event = field(default_factory=threading.Event)
    sent: int = 0

    def run(self, pending: list[Segment]) -> list[Segment]:
        """Send `pending` and what follows, one chunk behind; return what is not sent yet."""
        lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pump-digest")
        slowest, *others = self.hashers  # blake2b (first by name) at 1.2 ns/B: twice sha256's time here
        hashing: list[Future[None] | None] = [None, None]  # each buffer's bytes in the lane
        try:
            buffers = (bytearray(BUFFER), bytearray(BUFFER))
            turn = 0
            while (want := self.source.length - self.source.received) > 0:
                buffer = buffers[turn]
                _done(hashing, turn)  # the lane has finished with this buffer
                size = self.source.recv_into(self.client, buffer, min(want, BUFFER), self.stopped)
                segments = self.form.feed(buffer, size)
                self.check()
                if segments:
                    hashing[turn] = lane.submit(hash_segments, slowest, segments)
                    for hasher in others:
                        hash_segments(hasher, segments)
                    if self.copy is not None:
                        self.copy.write(segments)
                    self._send(pending)
                    pending = segments  # views of this buffer: the next chunk goes into the other one
                    turn ^= 1
            _done(hashing, 0)
            _done(hashing, 1)
            return pending
        finally:
            lane.shutdown(wait=True)
            self.client.close()
            self.index.close()

    def _send(self, segments: Sequence[Segment]) -> None:
        poller = select.poll()
        poller.register(self.index, select.POLLOUT)
        stalled = 0.0  # seconds the index has taken nothing
        for segment in segments:
            view = memoryview(segment)
            while view:
                try:
                    count = self.index.send(view)
                except BlockingIOError:
                    stalled += self._wait(poller)
                    if stalled >= self.write_timeout:
                        raise TimeoutError("the index took no bytes of the upload") from None
                    continue
                except OSError as exc:
                    raise IndexGone from exc
                self.sent += count
                view = view[count:]
                stalled = 0.0

    def _wait(self, poller: select.poll) -> float:
        """Wait for the index to take more; the seconds waited. An index that takes nothing for
        `write_timeout` is as good as gone (a timeout, as aiohttp reports a read that waits too long)."""
        if self.stopped.is_set():
            raise shutting_down()
        started = time.monotonic()
        poller.poll(POLL * 1000)
        return time.monotonic() - started


def hash_segments(hasher: Any, segments: Sequence[Segment]) -> None:
    """Feed segments to one hash state in order (on the loop, in a digest lane or in a pump's thread)."""
    for segment in segments:
        hasher.update(segment)


def shutting_down() -> GatewayError:
    return GatewayError(503, "The gateway is stopping; try the upload again", "shutting_down")


def _done(hashing: list[Future[None] | None], turn: int) -> None:
    job, hashing[turn] = hashing[turn], None
    if job is not None:
        job.result()


class UploadBody(Payload):
    """The gateway's body as aiohttp sends it to the index: each segment written in turn, a `Handoff` answered
    with the connection's socket. `sent` counts every byte that went, by either way; `failure` is the
    gateway's own refusal that stopped the body (aiohttp wraps what a body raises). Sent once: it is never
    replayed (`consumed`)."""

    _autoclose = True  # nothing to close: the flow owns what the body reads from

    def __init__(self, body: AsyncIterator[Segment | Handoff], *, content_type: str) -> None:
        super().__init__(body, content_type=content_type)
        self._body = body
        self._written = 0
        self._handoffs: list[Handoff] = []
        self.failure: GatewayError | None = None

    @property
    def sent(self) -> int:
        return self._written + sum(handoff.sent for handoff in self._handoffs)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("an upload body is streamed, never decoded")

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        """Small segments are written together (a small upload's head, file, trailer and closing delimiter in
        one send rather than four): held until COALESCE bytes wait, a `Handoff` comes, or the body ends. Holding
        only ever delays a segment; nothing goes before the body yields it."""
        self._consumed = True
        waiting: list[Segment] = []
        try:
            async for item in self._body:
                if isinstance(item, Handoff):
                    await self._write(writer, waiting)
                    self._handoffs.append(item)
                    item.socket = await _own_socket(writer)
                else:
                    waiting.append(item)
                    if sum(len(segment) for segment in waiting) >= COALESCE:
                        await self._write(writer, waiting)
            await self._write(writer, waiting)
        except GatewayError as exc:
            self.failure = exc
            raise

    async def _write(self, writer: AbstractStreamWriter, waiting: list[Segment]) -> None:
        if not waiting:
            return
        data = waiting[0] if len(waiting) == 1 else b"".join(waiting)
        waiting.clear()
        self._written += len(data)
        await writer.write(data)


async def _own_socket(writer: AbstractStreamWriter) -> socket.socket | None:
    """A duplicate of the connection's socket once everything written through aiohttp is on it (so nothing
    written directly can overtake it), or None: TLS, or bytes still waiting in the transport."""
    transport = writer.transport
    if transport is None or transport.is_closing() or transport.get_extra_info("sslcontext") is not None:
        return None
    writer.send_headers()
    await writer.drain()
    if transport.get_write_buffer_size():
        return None
    raw = transport.get_extra_info("socket")
    return _nonblocking(raw.dup()) if raw is not None else None


def _nonblocking(sock: socket.socket) -> socket.socket:
    """A pump waits on its sockets with poll, a short while at a time, so that timeouts and a stop are seen."""
    sock.setblocking(False)
    return sock
