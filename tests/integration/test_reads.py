"""Reads through the in-process app: the index's pages with its file links rewritten onto the gateway, and its
files relayed byte for byte."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.dists import make_wheel
from tests.integration.conftest import AppFactory, IndexFactory


@pytest.mark.parametrize("flavour", ["pypiserver", "devpi"])
async def test_simple_pages_and_files_are_read_through_the_gateway(
    tmp_path: Path, start_index: IndexFactory, start_app: AppFactory, flavour: str
) -> None:
    index = await start_index(flavour)
    wheel = make_wheel(tmp_path, "demo", "1.0")
    index.files[wheel.name] = wheel.read_bytes()
    gateway = await start_app(index)
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()

    root = await gateway.client.get("/simple/", headers={"Accept": "text/html"})
    assert (root.status, root.reason) == (200, "OK")
    assert 'href="http://gateway.test/simple/demo/"' in await root.text()

    page = await gateway.client.get("/simple/demo/", headers={"Accept": "text/html"})
    assert (page.status, page.reason) == (200, "OK")
    text = await page.text()
    assert f"#sha256={sha256}" in text
    assert index.url not in text  # every link onto the gateway, none onto the index
    link = text.split('href="', 1)[1].split("#", 1)[0]
    assert link.startswith("http://gateway.test/")

    relayed = await gateway.client.get(link.removeprefix("http://gateway.test"))
    assert (relayed.status, await relayed.read()) == (200, wheel.read_bytes())
    assert index.simple_path + "demo/" in index.reads
    assert index.reads[-1] == link.removeprefix("http://gateway.test")


async def test_a_project_the_index_does_not_have_is_a_404(start_app: AppFactory, start_index: IndexFactory) -> None:
    index = await start_index()
    gateway = await start_app(index)

    page = await gateway.client.get("/simple/nothing-here/", headers={"Accept": "text/html"})

    message = "Not found: the index has no project 'nothing-here'"
    assert (page.status, page.reason) == (404, message)
    assert message in await page.text()
    assert index.reads[-1] == "/simple/nothing-here/"
