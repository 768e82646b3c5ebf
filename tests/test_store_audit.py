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
        await store.record_upload(file, display_name="Demo", claim=None, reservation=None, audit={**AUDIT, "n": n})

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
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await Store.open(store_url, audit_file=tmp_path / "audit.jsonl")
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


async def test_an_event_recorded_in_a_transaction_that_rolls_back_gets_no_line(store: Store, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="later"):
        async with store._transaction():
            await store.audit("test.event", n=1)
            raise RuntimeError("an error later in the transaction")
    await store.audit("test.event", n=2)
    assert await recorded(store) == [("test.event", 2)]
    assert lines(tmp_path) == [("test.event", 2)]


async def test_an_event_recorded_in_a_transaction_whose_caller_is_cancelled_gets_no_line(
    store: Store, tmp_path: Path
) -> None:
    audited, never = asyncio.Event(), asyncio.Event()

    async def change() -> None:
        async with store._transaction():
            await store.audit("test.event", n=1)
            audited.set()
            await never.wait()

    caller = asyncio.create_task(change())
    await audited.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert await recorded(store) == []
    assert lines(tmp_path) == []


async def test_an_event_recorded_in_a_transaction_gets_its_line_when_it_commits(store: Store, tmp_path: Path) -> None:
    alice = await store.add_user("alice", "x")
    await store.set_password(alice, "y", by="admin")
    assert lines(tmp_path) == await recorded(store)
    assert [event for event, _ in lines(tmp_path)] == ["user.added", "user.password_changed"]


async def test_another_coroutines_event_outlives_a_transaction_that_rolls_back(store: Store, tmp_path: Path) -> None:
    """Another coroutine's event is a transaction of its own: it waits for none it is not in (it joined the open
    one on the old shared connection), and its line is written for an event the database holds."""
    audited, fail = asyncio.Event(), asyncio.Event()

    async def change() -> None:
        async with store._transaction():
            await store.audit("test.event", n=1)
            audited.set()
            await fail.wait()
            raise RuntimeError("an error later in the transaction")

    caller = asyncio.create_task(change())
    await audited.wait()
    other = asyncio.create_task(store.audit("test.event", n=2))
    await asyncio.sleep(0.05)
    fail.set()
    with pytest.raises(RuntimeError, match="later"):
        await caller
    await other
    assert await recorded(store) == [("test.event", 2)]
    assert lines(tmp_path) == [("test.event", 2)]


async def test_lines_are_in_the_order_of_commits(store: Store, tmp_path: Path) -> None:
    audited, commit = asyncio.Event(), asyncio.Event()

    async def change() -> None:
        async with store._transaction():
            await store.audit("test.event", n=1)
            audited.set()
            await commit.wait()
            await store.audit("test.event", n=2)

    caller = asyncio.create_task(change())
    await audited.wait()
    other = asyncio.create_task(store.audit("test.event", n=3))
    await asyncio.sleep(0.05)
    commit.set()
    await asyncio.gather(caller, other)
    assert await recorded(store) == [("test.event", 1), ("test.event", 2), ("test.event", 3)]
    assert lines(tmp_path) == await recorded(store)
