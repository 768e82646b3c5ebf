from __future__ import annotations

import asyncio

import pytest

from gateway.errors import GatewayError
from gateway.existing import UNKNOWN_HASH, ExistingFiles, Lookup, listing, verdict

PYPISERVER_PAGE = """<html><body><h1>Links for demo-pkg</h1>
<a href="/packages/Demo_Pkg-0.1.0-py3-none-any.whl#sha256=ABCD">Demo_Pkg-0.1.0-py3-none-any.whl</a><br>
<a href="/packages/demo_pkg-0.1.0.tar.gz#md5=1234">demo_pkg-0.1.0.tar.gz</a><br>
<a href='../../+f/ea7/demo_pkg-0.2.0.tar.gz#sha256=ff'>demo_pkg-0.2.0.tar.gz</a>
<a href="/packages/demo%2Bpkg-1.0.tar.gz">x</a>
</body></html>"""


def test_listing_reads_pypiserver_and_devpi_links() -> None:
    assert listing(PYPISERVER_PAGE) == {
        "Demo_Pkg-0.1.0-py3-none-any.whl": "abcd",
        "demo_pkg-0.1.0.tar.gz": UNKNOWN_HASH,
        "demo_pkg-0.2.0.tar.gz": "ff",
        "demo+pkg-1.0.tar.gz": UNKNOWN_HASH,
    }


@pytest.mark.parametrize(
    ("existing", "new", "refused"), [("aa", "aa", False), ("aa", "bb", True), (UNKNOWN_HASH, "aa", True)]
)
def test_verdict(existing: str, new: str, refused: bool) -> None:
    if refused:
        with pytest.raises(GatewayError) as exc:
            verdict(existing, new, filename="f.whl", blake2_256="b2", help_url="H")
        assert exc.value.status == 400
        assert (
            exc.value.message == "File already exists ('f.whl', with blake2_256 hash 'b2'). See H for more information."
        )
    else:
        verdict(existing, new, filename="f.whl", blake2_256="b2", help_url="H")


def test_lookup_caches_absence_confirms_presence_and_spots_deleted_files() -> None:
    pages: list[str] = []
    page: dict[str, str | None] = {"text": '<a href="/packages/a-1.0.tar.gz#sha256=11">a</a>'}

    async def simple_page(project: str) -> str | None:
        pages.append(project)
        return page["text"]

    async def recorded(filename: str) -> str | None:
        return "22" if filename == "a-2.0.tar.gz" else None

    async def scenario() -> None:
        existing = ExistingFiles(simple_page, recorded, help_url="H")
        assert await existing.lookup("a", "a-3.0.tar.gz") == Lookup(project_listed=True, sha256=None)
        assert (await existing.lookup("a", "a-4.0.tar.gz")).sha256 is None
        assert pages == ["a"], "absence comes from the cached listing"
        assert (await existing.lookup("a", "a-4.0.tar.gz", fresh=True)).sha256 is None
        assert pages == ["a", "a"], "a fresh lookup asks the index"
        assert (await existing.lookup("a", "a-1.0.tar.gz")).sha256 == "11"
        assert pages == ["a", "a", "a"], "presence is confirmed afresh"
        page["text"] = ""
        assert (await existing.lookup("a", "a-1.0.tar.gz")).sha256 is None
        with pytest.raises(GatewayError) as exc:
            await existing.lookup("a", "a-2.0.tar.gz")
        assert exc.value.reason == "filename_reused"
        page["text"] = None
        assert await existing.lookup("b", "b-1.0.tar.gz") == Lookup(project_listed=False, sha256=None)

    asyncio.run(scenario())
