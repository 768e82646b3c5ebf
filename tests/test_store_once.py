"""One-time use on both backends: the first use wins, a second is refused until the first expires, and of many
uses at once exactly one wins."""

from __future__ import annotations

import asyncio
import time

from gateway.store import Store


async def test_a_key_is_used_once_until_its_use_expires(store: Store) -> None:
    now = time.time()
    assert await store.use_once("webauthn", "c1", expires=now + 300)
    assert not await store.use_once("webauthn", "c1", expires=now + 300)
    assert await store.use_once("oidc-jti", "c1", expires=now + 300)  # another purpose: another key
    assert await store.use_once("webauthn", "old", expires=now - 1)
    assert await store.use_once("webauthn", "old", expires=now + 300)  # the first use had expired
    assert not await store.use_once("webauthn", "old", expires=now + 300)
    assert await store.purge_used(now) == 0  # nothing left expired: "old" was used again
    assert await store.purge_used(now + 301) == 3


async def test_of_many_uses_at_once_exactly_one_wins(store: Store) -> None:
    expires = time.time() + 300
    results = await asyncio.gather(*(store.use_once("oidc-jti", "jti-1", expires=expires) for _ in range(20)))
    assert sorted(results) == [False] * 19 + [True]
