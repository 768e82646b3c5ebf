"""Files the index already holds, and PyPI's answer to a re-upload of one.

Every index answers a duplicate differently (pypiserver 409 or 400, devpi 409 or 200, others overwrite),
so the gateway decides itself, before forwarding: identical bytes are a 200 no-op, different bytes a
400 "File already exists", as on PyPI (so `twine upload --skip-existing` works in front of any index).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cachetools import TTLCache

from gateway.errors import GatewayError
from gateway.reads.rewrite import file_links, links_of

# A listing read from the index is trusted this long; files accepted through the gateway are added at once.
LISTING_TTL = 30.0
UNKNOWN_HASH = ""


def listing(page: str) -> dict[str, str]:
    """{filename: sha256 hex, or UNKNOWN_HASH when the index gives none} from a PEP 503 project page, read with the
    read path's linear tokenizer (a regex over hostile markup was quadratic)."""
    return {link.filename: link.sha256 or UNKNOWN_HASH for link in file_links(links_of(page))}


def already_exists(filename: str, blake2_256: str, help_url: str) -> GatewayError:
    return GatewayError(
        400,
        f"File already exists ('{filename}', with blake2_256 hash '{blake2_256}'). "
        f"See {help_url} for more information.",
        "file_exists",
    )


def verdict(existing_sha256: str, new_sha256: str, *, filename: str, blake2_256: str, help_url: str) -> None:
    """Return for an identical re-upload; raise PyPI's 400 otherwise (also when the index gave no hash)."""
    if existing_sha256 == UNKNOWN_HASH or existing_sha256 != new_sha256:
        raise already_exists(filename, blake2_256, help_url)


def previously_used(filename: str, help_url: str) -> GatewayError:
    return GatewayError(
        400,
        f"This filename was previously used by a file that has since been deleted ('{filename}'). "
        f"Use a different version. See {help_url} for more information.",
        "filename_reused",
    )


@dataclass(frozen=True)
class Lookup:
    """`project_listed`: the index has a page for the project; `sha256`: the file's, when the index lists it
    (UNKNOWN_HASH when it gives none)."""

    project_listed: bool
    sha256: str | None


@dataclass(frozen=True)
class _Listing:
    exists: bool
    files: dict[str, str]


class ExistingFiles:
    """What the index lists (its simple page, cached briefly), checked against what the gateway recorded."""

    def __init__(
        self,
        simple_page: Callable[[str], Awaitable[str | None]],
        recorded: Callable[[str], Awaitable[str | None]],
        *,
        help_url: str,
    ) -> None:
        self._simple_page = simple_page
        self._recorded = recorded
        self._help_url = help_url
        self._listings: TTLCache[str, _Listing] = TTLCache(maxsize=1024, ttl=LISTING_TTL)

    async def lookup(self, project: str, filename: str, *, fresh: bool = False) -> Lookup:
        """Whether the index has the project, and the sha256 of `filename` (in any letter case) if it lists it.

        "Not listed" may come from the cache (unless `fresh`): if the index got the file meanwhile, it refuses the
        upload and the gateway asks again. "Listed" is always confirmed afresh, since it ends the upload here.
        A filename the gateway once delivered but the index no longer lists was deleted: like PyPI, it cannot be
        used again (an installer may have cached the old file under that name).
        """
        key = filename.lower()  # one file to installers, whatever the letter case
        cached = None if fresh else self._listings.get(project)
        if cached is None or key in cached.files:
            page = await self._simple_page(project)
            listed = await asyncio.to_thread(listing, page) if page is not None else {}
            files = {name.lower(): sha256 for name, sha256 in listed.items()}
            cached = self._listings[project] = _Listing(page is not None, files)
        found = cached.files.get(key)
        if found is None and await self._recorded(filename) is not None:
            raise previously_used(filename, self._help_url)
        return Lookup(project_listed=cached.exists, sha256=found)

    def add(self, project: str, filename: str, sha256: str) -> None:
        if project in self._listings:
            self._listings[project] = _Listing(True, {**self._listings[project].files, filename.lower(): sha256})

    def forget(self, project: str) -> None:
        self._listings.pop(project, None)
