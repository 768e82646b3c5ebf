"""`serve --workers N`: the parent that forks N workers onto the sockets it bound, and keeps N of them running.

Pre-fork, as gunicorn does: the parent has bound the listening sockets and started what must exist once (the
embedded index, the metrics directory); it forks the workers, which inherit the sockets and each run an event
loop of their own, and the kernel hands every new connection to one of the processes waiting to accept. Chosen
over independent processes on SO_REUSEPORT sockets because a port already taken stays the one-line error of
`serve` (a second gateway of the same user could bind beside the first with SO_REUSEPORT and silently take a share
of its connections), and a connection waiting to be accepted when a worker dies stays in the one queue for the
others (each SO_REUSEPORT socket has its own queue, reset with its process).

The parent has no event loop and no thread: it forks before any exists and then waits in `select` on two pipes,
the one its signal handlers write to (`signal.set_wakeup_fd`) and the one workers write their number to once they
serve. SIGTERM or SIGINT: every worker is sent SIGTERM and drains as a single `serve` does (a second signal kills
them). A worker that ends on its own is logged and started again, at once after a long life, then after 1, 2,
4 … up to 30 s while its replacements keep ending soon (`restart_delay`).

At the start, the first worker starts alone and the others once it serves: it creates and migrates a new store
(processes opening a new SQLite store at once race on its migrations), and a gateway that cannot start says why
once. A worker that ends before the first start-up of all of them completed ends the whole gateway with status 1:
it printed why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.embedded import die_with_parent

log = logging.getLogger("gateway.workers")

STABLE = 30.0  # a worker that ran this long is replaced at once
MAX_DELAY = 30.0
STOP_TIMEOUT = 90.0  # a worker's drain (aiohttp's 60 s for requests in flight, then the teardown), then SIGKILL
_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)


def _noted(signum: int, frame: object) -> None:
    """The signal's number reaches `select` through the wakeup pipe; the handler only stops the default action."""


def restart_delay(quick_ends: int) -> float:
    """Seconds before a worker is started again, given how many of its predecessors in a row ended within
    `STABLE` seconds of starting (this one included): none, then 1, 2, 4 … at most `MAX_DELAY`."""
    if quick_ends <= 0:
        return 0.0
    return float(min(MAX_DELAY, 2.0 ** (quick_ends - 1)))


def describe(status: int) -> str:
    """How a worker ended, from its `waitpid` status."""
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


@dataclass(frozen=True)
class Start:
    """What a worker is told when it starts: its number (0 … N-1), whether it replaces one that ended, and the
    function to call once it serves."""

    number: int
    replacement: bool
    ready: Callable[[], None]


@dataclass
class _Slot:
    number: int
    pid: int = 0
    started: float = 0.0
    quick_ends: int = 0
    restart_at: float | None = None
    serving: bool = False


class Supervisor:
    """Runs `work` in `count` forked workers until SIGTERM/SIGINT; `work` returns the worker's exit status.

    `serving` runs once, when every worker has first said it serves (the banner); `ended(pid)` after each worker is
    reaped (the metrics' bookkeeping of dead processes)."""

    def __init__(
        self,
        count: int,
        work: Callable[[Start], int],
        *,
        serving: Callable[[], None],
        ended: Callable[[int], None],
    ) -> None:
        self._work = work
        self._serving = serving
        self._ended = ended
        self._slots = [_Slot(number) for number in range(count)]
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._ready_r, self._ready_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._parent = os.getpid()
        self._started = False

    def run(self) -> int:
        """0 after a stop by signal; 1 when a worker ended during the first start-up."""
        if threading.active_count() != 1:
            raise RuntimeError("the workers must be forked before any thread exists")
        previous = {sig: signal.signal(sig, _noted) for sig in _SIGNALS}
        old_fd = signal.set_wakeup_fd(self._wake_w)
        try:
            self._spawn(self._slots[0], replacement=False)
            return self._supervise()
        finally:
            self._stop()
            signal.set_wakeup_fd(old_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for fd in (self._wake_r, self._wake_w, self._ready_r, self._ready_w):
                os.close(fd)

    def _supervise(self) -> int:
        while True:
            due = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
            timeout = max(0.0, min(due) - time.monotonic()) if due else None
            readable, _, _ = select.select([self._wake_r, self._ready_r], [], [], timeout)
            if self._wake_r in readable and self._signalled() & {signal.SIGTERM, signal.SIGINT}:
                return 0
            if self._ready_r in readable:
                self._note_ready()
            if not self._reap():
                return 1
            now = time.monotonic()
            for slot in self._slots:
                if slot.restart_at is not None and slot.restart_at <= now:
                    self._spawn(slot, replacement=True)

    def _signalled(self) -> set[int]:
        with contextlib.suppress(BlockingIOError):
            return set(os.read(self._wake_r, 4096))
        return set()

    def _note_ready(self) -> None:
        with contextlib.suppress(BlockingIOError):
            for word in os.read(self._ready_r, 4096).split():
                slot = self._slots[int(word)]
                slot.serving = True
                log.info("worker %d serving (pid %d)", slot.number, slot.pid)
        if self._started:
            return
        for slot in self._slots:
            if not slot.pid:  # the first worker serves: the others start
                self._spawn(slot, replacement=False)
        if all(slot.serving for slot in self._slots):
            self._started = True
            self._serving()

    def _reap(self) -> bool:
        """Collect the workers that ended and schedule their replacements; False if one ended during the first
        start-up (the gateway then stops)."""
        for slot in self._slots:
            if not slot.pid:
                continue
            pid, status = os.waitpid(slot.pid, os.WNOHANG)
            if pid == 0:
                continue
            self._ended(pid)
            slot.pid, slot.serving = 0, False
            if not self._started:
                log.error("worker %d (pid %d) %s while starting: the gateway stops", slot.number, pid, describe(status))
                return False
            lived = time.monotonic() - slot.started
            slot.quick_ends = slot.quick_ends + 1 if lived < STABLE else 0
            delay = restart_delay(slot.quick_ends)
            log.warning(
                "worker %d (pid %d) %s after %.0f s; starting it again in %.0f s",
                slot.number,
                pid,
                describe(status),
                lived,
                delay,
            )
            slot.restart_at = time.monotonic() + delay
        return True

    def _spawn(self, slot: _Slot, *, replacement: bool) -> None:
        slot.restart_at = None
        slot.started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            self._child(slot.number, replacement)
        slot.pid = pid
        log.info("worker %d started (pid %d)", slot.number, pid)

    def _child(self, number: int, replacement: bool) -> None:
        """The forked worker: the parent's signal handling undone, dying with the parent, running `work`; never
        returns into the parent's code (its `finally` blocks would stop the gateway)."""
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in _SIGNALS:
                signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
            os.close(self._wake_r)
            os.close(self._wake_w)
            os.close(self._ready_r)
            die_with_parent()
            if os.getppid() != self._parent:  # the parent died before the line above
                return
            ready_w = self._ready_w

            def ready() -> None:
                os.write(ready_w, f"{number}\n".encode())

            status = self._work(Start(number, replacement, ready))
        except BaseException:
            log.exception("worker %d failed", number)
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(status)

    def _stop(self) -> None:
        """SIGTERM to every worker, wait for them (a second signal, or STOP_TIMEOUT: SIGKILL), reap them all."""
        running = [slot for slot in self._slots if slot.pid]
        for slot in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        killed = False
        while True:
            for slot in running:
                if slot.pid and os.waitpid(slot.pid, os.WNOHANG)[0]:
                    self._ended(slot.pid)
                    slot.pid = 0
            running = [slot for slot in running if slot.pid]
            if not running:
                return
            remaining = deadline - time.monotonic()
            select.select([self._wake_r], [], [], max(0.0, min(remaining, 0.5)))
            if not killed and (remaining <= 0 or self._signalled() & {signal.SIGTERM, signal.SIGINT}):
                killed = True
                log.warning("workers still running: killing %d of them", len(running))
                for slot in running:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(slot.pid, signal.SIGKILL)
