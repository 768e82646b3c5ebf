"""`create_app` driven in the test's own event loop by aiohttp's test client, in front of a `FakeIndex`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from gateway.config import Config
from tests.harness import database
from tests.harness.fake_index import PASSWORD, FakeIndex
from tests.harness.forms import upload_body


@dataclass
class InProcess:
    """One app under test: its client, its frozen config and the index behind it."""

    client: TestClient[Any, Any]
    config: Config
    index: FakeIndex

    async def upload(
        self, wheel: Path, token: str, *, files_first: bool = False, **overrides: str | None
    ) -> aiohttp.ClientResponse:
        """POST /legacy/ as twine does (or with the file before the fields), asking for a one-line text answer."""
        content_type, body = upload_body(wheel, files_first=files_first, **overrides)
        headers = {
            "Content-Type": content_type,
            "Authorization": aiohttp.encode_basic_auth("__token__", token),
            "Accept": "text/plain",
        }
        return await self.client.post("/legacy/", data=body, headers=headers)

    def rows(self, sql: str, **parameters: object) -> list[tuple[Any, ...]]:
        """What the store holds, read over a connection of the test's own (`:name` parameters)."""
        return database.rows(self.config.store.url, sql, **parameters)


def password_file(directory: Path) -> str:
    """The file holding the index's service password, as [upstream] password_file names it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "index-password"
    path.write_text(PASSWORD + "\n")
    return str(path)
