"""The signing keys (JWKS) of each configured OIDC issuer, fetched with aiohttp and held in memory, as Warehouse
caches them: a key set is fetched only when a token names a key id that is not held, at most once per cooldown per
issuer, however many tokens ask, and whatever the fetch gives; a fetch that fails in any way keeps the keys held
("fail static"), so an issuer's outage refuses only tokens signed with keys the gateway has never seen.

Where the keys come from: `jwks_url` when the issuer has one, else the `jwks_uri` of the issuer's discovery document
(`{url}/.well-known/openid-configuration`, whose `issuer` must be the configured URL, as OpenID Connect Discovery
requires). Every document is fetched over https (plain http to loopback only) with no redirect followed, within
`timeout` seconds, and is at most `MAX_DOCUMENT` bytes: an issuer, or whoever answers for it, cannot make the
gateway wait, follow it elsewhere or hold a large answer. A failure is logged once, with the issuer's name; no token
is ever seen here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt

from gateway.config import OIDC_ALGORITHMS, OIDCIssuer
from gateway.config_values import is_https_url

log = logging.getLogger("gateway.oidc")

MAX_DOCUMENT = 2**20  # bytes of a discovery document or key set (GitHub's key set is about 3 KiB)
FETCH_TIMEOUT = 5.0  # seconds for each document, as Warehouse's `requests.get(..., timeout=5)`
COOLDOWN = 60.0  # seconds between two fetches of one issuer's keys, as Warehouse's `SETEX …/timeout 60`
_KEY_TYPES = ("RSA", "EC", "OKP")  # asymmetric keys; an "oct" key would be a shared secret


class KeySets:
    """Each issuer's keys by key id (`kid`), for `verify`. One per process, on the loop that uses it; `session`
    is the caller's (and closed by it), `clock` a monotonic clock that tests can move."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        cooldown: float = COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self._session = session
        self._cooldown = cooldown
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._keys: dict[str, dict[str, jwt.PyJWK]] = {}  # by issuer URL, then kid
        self._attempted: dict[str, float] = {}  # when each issuer's keys were last fetched (or tried)
        self._fetching: dict[str, asyncio.Task[None]] = {}

    async def key(self, issuer: OIDCIssuer, kid: str) -> jwt.PyJWK | None:
        """The key `kid` of `issuer`; the key set is fetched again when it is not held (unless one was fetched less
        than a cooldown ago). None: the issuer has no such key, as far as the gateway can tell."""
        held = self._keys.get(issuer.url, {})
        if kid not in held:
            await self._refresh(issuer)
            held = self._keys.get(issuer.url, {})
        return held.get(kid)

    def held(self, issuer: OIDCIssuer) -> frozenset[str]:
        """The key ids held for `issuer` now."""
        return frozenset(self._keys.get(issuer.url, {}))

    async def close(self) -> None:
        """Stop the fetches under way (before the session closes)."""
        tasks = list(self._fetching.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fetching.clear()

    async def _refresh(self, issuer: OIDCIssuer) -> None:
        """Fetch `issuer`'s keys, or wait for the fetch already under way: lookups at once share one. A lookup
        that is cancelled leaves the fetch to the others (`shield`)."""
        task = self._fetching.get(issuer.url)
        if task is None:
            now = self._clock()
            last = self._attempted.get(issuer.url)
            if last is not None and now - last < self._cooldown:
                return
            self._attempted[issuer.url] = now
            task = asyncio.get_running_loop().create_task(self._fetch(issuer))
            self._fetching[issuer.url] = task
        await asyncio.shield(task)

    async def _fetch(self, issuer: OIDCIssuer) -> None:
        try:
            keys, skipped = await self._key_set(issuer)
        except Unusable as problem:
            log.warning(
                "the keys of OIDC issuer %s were not refreshed: %s; the %d held are kept",
                issuer.name,
                problem,
                len(self._keys.get(issuer.url, {})),
                extra={"issuer": issuer.name},
            )
        else:
            self._keys[issuer.url] = keys
            log.info(
                "the keys of OIDC issuer %s were refreshed: %d held, %d unusable skipped",
                issuer.name,
                len(keys),
                skipped,
                extra={"issuer": issuer.name},
            )
        finally:
            self._fetching.pop(issuer.url, None)

    async def _key_set(self, issuer: OIDCIssuer) -> tuple[dict[str, jwt.PyJWK], int]:
        """The usable keys of `issuer`'s key set by kid, and how many of its entries were not."""
        url = issuer.jwks_url
        if not url:
            discovery = await self._document(issuer.url.rstrip("/") + "/.well-known/openid-configuration")
            if discovery.get("issuer") != issuer.url:
                raise Unusable("its discovery document names another issuer than the configured url")
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not is_https_url(jwks_uri):
                raise Unusable("its discovery document has no jwks_uri on https (http only to loopback)")
            url = jwks_uri
        entries = (await self._document(url)).get("keys")
        if not isinstance(entries, list):
            raise Unusable(f"{url} holds no list of keys")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries:
            kid, key = _usable(entry)
            if kid is not None and key is not None:
                keys.setdefault(kid, key)
        if not keys:
            raise Unusable(f"{url} holds no usable signing key")
        return keys, len(entries) - len(keys)

    async def _document(self, url: str) -> dict[str, Any]:
        """The JSON object at `url`, fetched within the bounds (module docstring)."""
        try:
            async with self._session.get(
                url, allow_redirects=False, timeout=self._timeout, headers={"Accept": "application/json"}
            ) as response:
                if response.status != 200:
                    raise Unusable(f"{url} answered {response.status}")
                if response.content_length is not None and response.content_length > MAX_DOCUMENT:
                    raise Unusable(f"{url} is larger than {MAX_DOCUMENT} bytes")
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_DOCUMENT:
                        raise Unusable(f"{url} is larger than {MAX_DOCUMENT} bytes")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unusable(f"{url} could not be fetched ({type(exc).__name__})") from None
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise Unusable(f"{url} is not JSON") from None
        if not isinstance(document, dict):
            raise Unusable(f"{url} is not a JSON object")
        return document


class Unusable(Exception):
    """Why a fetch gave no key set: in the gateway's words (a URL, a status), never the answer's content."""


def _usable(entry: object) -> tuple[str | None, jwt.PyJWK | None]:
    """An entry of a key set as (kid, key) when it is an asymmetric signing key with a key id whose algorithm
    (its `alg`, or PyJWT's default for its type and curve) the gateway accepts at all; (None, None) otherwise."""
    if not isinstance(entry, dict) or entry.get("kty") not in _KEY_TYPES or entry.get("use", "sig") != "sig":
        return None, None
    kid = entry.get("kid")
    if not isinstance(kid, str) or not kid:
        return None, None
    try:
        key = jwt.PyJWK(entry)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None, None
    return (kid, key) if key.algorithm_name in OIDC_ALGORITHMS else (None, None)
