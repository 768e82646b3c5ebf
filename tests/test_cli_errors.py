"""A failing embedded index is one line and exit status 1 from `serve` and `project import`, as any user mistake."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from gateway import cli
from gateway.cli import project_import, serve
from gateway.embedded import EmbeddedIndexError

FAILURE = "the embedded pypiserver exited with status 3"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text('[store]\nurl = "sqlite:///gateway.db"\n[tokens]\nsecret_file = "secret.key"\n')
    return path


def test_serve(config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    async def failing(*args: Any) -> None:
        raise EmbeddedIndexError(FAILURE)

    def no_sockets(host: str, port: int) -> list[socket.socket]:
        return []

    monkeypatch.setattr(serve, "_listen", no_sockets)
    monkeypatch.setattr(serve.logs, "setup", lambda *args: None)
    monkeypatch.setattr(serve, "_serve", failing)
    assert cli.main(["--config", str(config), "serve"]) == 1
    assert capsys.readouterr().err == f"upload-gateway: {FAILURE}\n"


def test_project_import(config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def failing(*args: Any) -> Any:
        raise EmbeddedIndexError(FAILURE)

    monkeypatch.setattr(project_import, "open_index", failing)
    assert cli.main(["--config", str(config), "project", "import"]) == 1
    assert capsys.readouterr().err == f"upload-gateway: {FAILURE}\n"
