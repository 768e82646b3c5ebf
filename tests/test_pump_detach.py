"""`BodySource.detach` on a connection the client gave up before the pump could take it: the client's fault,
told as a truncated upload (never an AssertionError or a reset that aiohttp would report as the index's fault)."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request

from gateway.config import load_config
from gateway.errors import GatewayError
from gateway.upload.flow import BodySource


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
