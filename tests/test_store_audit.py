"""The audit mirror in a real store: one line per audited event, in the order the events were recorded even when
they come at once, written by a thread of its own (never on the event loop), and all of it on disk after close."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from gateway import private
from gateway.store import Store, StoredFile

AUDIT = {"user_name": "alice", "token_id": None, "project": "demo", "address": "203.0.113.9", "reason": "ok"}


def lines(tmp_path: Path) -> list[tuple[str, object]]:
    events = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    return [(event["event"], event["detail"].get("n")) for event in events]


async def recorded(store: Store) -> list[tuple[str, object]]:
    return [(event.event, event.detail.get("n")) for event in await store.audit_events()]


async def test_concurrent_events_each_get_a_line_in_the_order_they_were_recorded(store: Store, tmp_path: Path) -> None:
    alice = await store.add_user("alice", "x")

    async def upload(n: int) -> None:
        file = StoredFile(f"demo-{n}.tar.gz", "demo", 10, "a" * 64, "b" * 64, "alice", None)
        await store.record_upload(file, display_name="Demo", claim=None, upload_id=str(n), audit={**AUDIT, "n": n})

    await asyncio.gather(
        *(store.audit("test.event", user_name=alice.name, n=n) for n in range(200)),
        *(upload(n) for n in range(200, 230)),
        *(store.grant("demo", "Demo", alice, "owner", by="test") for _ in range(5)),
    )
    written = lines(tmp_path)
    assert written == await recorded(store)
    assert len(written) == 1 + 200 + 30 + 5
    assert sorted(n for event, n in written if event == "test.event") == list(range(200))


async def test_the_lines_are_written_off_the_event_loop(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    append = private.append_line

    def spy(path: Path, line: str) -> None:
        threads.append(threading.current_thread())
        append(path, line)

    monkeypatch.setattr(private, "append_line", spy)
    await store.audit("test.event", n=1)
    assert len(threads) == 1 and threads[0] is not threading.main_thread()
    assert lines(tmp_path) == [("test.event", 1)]


async def test_a_line_handed_over_lands_by_close_even_if_its_caller_was_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await Store.open(tmp_path / "gateway.db", audit_file=tmp_path / "audit.jsonl")
    entered, release = threading.Event(), threading.Event()
    append = private.append_line

    def slow(path: Path, line: str) -> None:
        entered.set()
        release.wait(10)
        append(path, line)

    monkeypatch.setattr(private, "append_line", slow)
    caller = asyncio.create_task(store.audit("test.event", n=1))
    assert await asyncio.to_thread(entered.wait, 10)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert lines(tmp_path) == []
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0.05)
    assert not closing.done(), "close waits for the line"
    release.set()
    await closing
    assert lines(tmp_path) == [("test.event", 1)]
