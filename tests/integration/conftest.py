"""Fixtures of the in-process layer: a fake index on the test's loop and the real app in front of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.app import SERVER_OPTIONS, create_app
from tests.harness.config import app_config
from tests.harness.fake_index import FakeIndex
from tests.harness.inprocess import InProcess, password_file

IndexFactory = Callable[..., Awaitable[FakeIndex]]
AppFactory = Callable[..., Awaitable[InProcess]]


@pytest.fixture
def start_index(aiohttp_server: AiohttpServer) -> IndexFactory:
    async def start(flavour: Literal["pypiserver", "devpi"] = "pypiserver") -> FakeIndex:
        index = FakeIndex(flavour)
        server = await aiohttp_server(index.app())
        index.url = str(server.make_url("/"))
        return index

    return start


@pytest.fixture
def start_app(tmp_path: Path, aiohttp_client: AiohttpClient, store_url: str) -> AppFactory:
    """The app over `index` on `store_url` (so each test runs on SQLite and on PostgreSQL), its config overridden
    by {section: {key: value}}."""

    async def start(index: FakeIndex, **overrides: dict[str, object]) -> InProcess:
        directory = tmp_path / "gateway"
        overrides = {**overrides, "store": {"url": store_url, **overrides.get("store", {})}}
        config = app_config(directory, index.upstream(password_file(directory)), **overrides)
        client = await aiohttp_client(create_app(config), server_kwargs=SERVER_OPTIONS)
        return InProcess(client, config, index)

    return start


@pytest.fixture
async def index(start_index: IndexFactory) -> FakeIndex:
    return await start_index()


@pytest.fixture
async def gateway(start_app: AppFactory, index: FakeIndex) -> InProcess:
    return await start_app(index)
