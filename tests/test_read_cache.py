"""The simple-page cache: bounded in bytes, purged with the root, and never refilled by a read from before a purge."""

from __future__ import annotations

from gateway.reads.cache import ENTRY_OVERHEAD, Page, PageCache, cache_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def page(body: bytes, checked: float = 1000.0) -> Page:
    return Page(body, '"e"', None, None, checked)


def test_keys() -> None:
    assert cache_key(None, "html") == ("", "html")
    assert cache_key("demo", "json") == ("demo", "json")


def test_bounded_in_bytes_least_recently_used_first() -> None:
    cache = PageCache(3 * (100 + ENTRY_OVERHEAD), ttl=30)
    for name in ("a", "b", "c"):
        assert cache.put(cache_key(name, "html"), page(b"x" * 100), 0)
    assert cache.get(cache_key("a", "html")) is not None  # a is now the most recent
    cache.put(cache_key("d", "html"), page(b"x" * 100), 0)
    assert cache.get(cache_key("b", "html")) is None and cache.get(cache_key("a", "html")) is not None
    assert cache.bytes == 3 * (100 + ENTRY_OVERHEAD) and len(cache) == 3
    assert not cache.put(cache_key("huge", "html"), page(b"x" * 10_000), 0)


def test_purge_drops_the_project_and_the_root_in_both_kinds() -> None:
    cache = PageCache(1 << 20, ttl=30)
    for key in (
        cache_key("demo", "html"),
        cache_key("demo", "json"),
        cache_key(None, "html"),
        cache_key("other", "json"),
    ):
        cache.put(key, page(b"p"), cache.generation(key))
    assert cache.purge("demo") == 3
    assert cache.get(cache_key("other", "json")) is not None
    assert cache.get(cache_key("demo", "json")) is None and cache.get(cache_key(None, "html")) is None


def test_a_read_from_before_a_purge_is_not_stored() -> None:
    cache = PageCache(1 << 20, ttl=30)
    key, root = cache_key("demo", "html"), cache_key(None, "json")
    taken, root_taken = cache.generation(key), cache.generation(root)
    cache.purge("demo")
    assert not cache.put(key, page(b"old"), taken) and not cache.put(root, page(b"old"), root_taken)
    assert cache.put(key, page(b"new"), cache.generation(key))
    other = cache_key("other", "html")
    assert cache.put(other, page(b"o"), cache.generation(other))  # other projects are not held back


def test_freshness_follows_the_ttl() -> None:
    clock = Clock()
    cache = PageCache(1 << 20, ttl=30, clock=clock)
    cached = page(b"p", checked=clock.now)
    assert cache.fresh(cached)
    clock.now += 30
    assert not cache.fresh(cached) and cache.fresh(cached.confirmed(clock.now))
