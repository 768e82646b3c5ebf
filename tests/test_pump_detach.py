"""`BodySource.detach` on a connection the client gave up before the pump could take it: the client's fault,
told as a truncated upload (never an AssertionError or a reset that aiohttp would report as the index's fault)."""

from __future__ import annotations

import asyncio
import threading
from unittest import mock

import pytest
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request

from gateway.config import load_config
from gateway.errors import GatewayError
from gateway.upload.pumping import Pumping
from gateway.upload.source import BodySource


async def _source(*, transport: object | None, lost: BaseException | None) -> BodySource:
    protocol = mock.Mock(transport=transport)
    payload = StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(b"x" * 1000)  # what aiohttp read before the connection was lost
    request = make_mocked_request("POST", "/legacy/", protocol=protocol, transport=transport, payload=payload)
    if lost is not None:
        request.content.set_exception(lost)
    return BodySource(request, length=8 * 2**20, limits=load_config(None, {}).limits)


@pytest.mark.parametrize(
    ("transport", "lost"),
    [
        (None, ConnectionResetError("Connection lost")),
        (mock.Mock(**{"is_closing.return_value": True}), None),
        (mock.Mock(**{"is_closing.return_value": False}), ConnectionResetError("Connection lost")),
    ],
    ids=["transport gone", "transport closing", "reset seen"],
)
async def test_a_connection_lost_before_the_pump_is_a_truncated_upload(
    transport: object | None, lost: BaseException | None
) -> None:
    source = await _source(transport=transport, lost=lost)
    with pytest.raises(GatewayError) as excinfo:
        source.detach()
    assert (excinfo.value.status, excinfo.value.reason) == (400, "truncated_body")
    assert source.received == 0


async def test_stopping_a_pump_waits_for_its_thread_through_repeated_cancels() -> None:
    """aiohttp cancels the index request's writer more than once (the answer's end, then its release): the flow
    must still not go on (closing the file copy and hashers the thread uses) before the thread has ended."""
    pumping = Pumping.__new__(Pumping)
    pump = mock.Mock(stopped=threading.Event())
    release = threading.Event()
    job = asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
    pumping._pumping = (pump, job)
    stopping = asyncio.create_task(pumping.stop())
    for _ in range(3):
        await asyncio.sleep(0.05)
        stopping.cancel()
    await asyncio.sleep(0.05)
    assert pump.stopped.is_set()
    assert not stopping.done()  # still waiting for the thread
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert job.done() and pumping._pumping is None
