"""The simple-page cache: rewritten pages in memory, bounded in bytes, purged when an upload changes a project.

Keys are (project, kind): the PEP 503 name ("" for the root) and "html" or "json". The cache decides nothing
about who may read; whoever looks a page up has decided that first. A page fetched before a purge is never stored
after it (each purge moves the project's generation and the root's), so a slow read of the old page cannot
bring it back once the upload has been answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache

from gateway.reads.negotiate import Kind

ROOT = ""
KINDS: tuple[Kind, ...] = ("html", "json")
ENTRY_OVERHEAD = 512  # what an entry costs beyond its body, roughly: the key, the headers, the LRU's bookkeeping

CacheKey = tuple[str, Kind]


def cache_key(project: str | None, kind: Kind) -> CacheKey:
    """`project` is the PEP 503 name, None for the root page."""
    return (ROOT if project is None else project, kind)


@dataclass(frozen=True)
class Page:
    """A rewritten page. `etag` is the gateway's (of `body`); `validators` are the index's ETag and Last-Modified,
    to revalidate with; `checked` is when the index last confirmed it (monotonic seconds)."""

    body: bytes
    etag: str
    upstream_etag: str | None
    upstream_last_modified: str | None
    checked: float

    def confirmed(self, now: float) -> Page:
        return Page(self.body, self.etag, self.upstream_etag, self.upstream_last_modified, now)


class PageCache:
    def __init__(self, max_bytes: int, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._pages: LRUCache[CacheKey, Page] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda page: len(page.body) + ENTRY_OVERHEAD
        )
        self._generations: dict[str, int] = {}

    def get(self, key: CacheKey) -> Page | None:
        """The cached page, fresh or not (see `fresh`)."""
        return self._pages.get(key)

    def fresh(self, page: Page) -> bool:
        return self.clock() - page.checked < self.ttl

    def generation(self, key: CacheKey) -> int:
        """Take this before fetching a page; `put` it with the page."""
        return self._generations.get(key[0], 0)

    def put(self, key: CacheKey, page: Page, generation: int) -> bool:
        """Keep the page unless its project was purged since `generation` was taken, or it is larger than the cache."""
        if self._generations.get(key[0], 0) != generation:
            return False
        try:
            self._pages[key] = page
        except ValueError:  # larger than the whole cache
            return False
        return True

    def purge(self, project: str) -> int:
        """Drop the project's pages and the root's, at once; the number of pages dropped."""
        dropped = 0
        for name in {project, ROOT}:
            self._generations[name] = self._generations.get(name, 0) + 1
            for kind in KINDS:
                dropped += self._pages.pop((name, kind), None) is not None
        return dropped

    @property
    def bytes(self) -> int:
        return int(self._pages.currsize)

    def __len__(self) -> int:
        return len(self._pages)
