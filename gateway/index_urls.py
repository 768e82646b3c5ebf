"""Where the index lives, and its URLs shown as the gateway's. Pure: `gateway.proxy` does the talking."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class UpstreamURLs:
    """Where the index lives; every URL ends with '/'."""

    base: str
    upload: str
    simple: str

    @classmethod
    def build(cls, base: str, upload: str = "", simple: str = "") -> UpstreamURLs:
        base = _slash(base)
        return cls(base=base, upload=upload or base, simple=_slash(simple) if simple else base + "simple/")

    def to_public(self, url: str, public_url: str) -> str | None:
        """The gateway URL for an absolute index URL, or None when it points elsewhere."""
        if url.startswith(self.simple):
            return f"{public_url}/simple/{url[len(self.simple) :]}"
        if url.startswith(self.base):
            return f"{public_url}/{url[len(self.base) :]}"
        return None

    def hide(self, text: str, public_url: str) -> str:
        """The index's own words with every URL on its host shown as the gateway's: they reach clients."""
        origins = sorted({_origin(url) for url in (self.base, self.upload, self.simple)}, key=len, reverse=True)
        own = re.compile("(?:" + "|".join(map(re.escape, origins)) + r")[^\s\"'<>]*", re.IGNORECASE)
        return own.sub(lambda match: self.to_public(match.group(0), public_url) or public_url + "/", text)


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
