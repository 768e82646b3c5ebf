"""What the index's answer to an upload means for the client: stored, a duplicate, or a refusal to pass on."""

from __future__ import annotations

import re

from gateway.errors import GatewayError
from gateway.proxy import UpstreamAnswer

_TAGS = re.compile(r"<[^>]+>")
_PRE = re.compile(r"<pre>(.*?)</pre>", re.DOTALL | re.IGNORECASE)


def upstream_message(text: str) -> str:
    """The index's own words, without HTML, on one bounded line."""
    pre = _PRE.search(text)
    plain = _TAGS.sub(" ", pre.group(1) if pre else text)
    return " ".join(plain.split())[:200]


def is_conflict(answer: UpstreamAnswer) -> bool:
    """pypiserver: 409, or 400 "already exists" for twine; devpi: 409; Gitea, GitLab: 400 "already…"."""
    return answer.status == 409 or (answer.status == 400 and "already" in (answer.reason + answer.text).lower())


def raise_for(answer: UpstreamAnswer) -> None:
    """Raise the client-facing error for an index answer that is neither a success nor a conflict (the
    index's URL is never in it: `Upstream.post_upload` logged the answer with it)."""
    if 200 <= answer.status < 300:
        return
    said = upstream_message(answer.text) or answer.reason
    if answer.status in (401, 403):
        raise GatewayError(
            502,
            f"The package index refused the gateway's own credential (HTTP {answer.status}); "
            "an operator must check upstream.username and upstream.password_file",
            "upstream_auth",
        )
    if answer.status == 413:
        raise GatewayError(413, f"The package index refused the file as too large: {said}", "upstream_too_large")
    if answer.status >= 500:
        raise GatewayError(502, f"The package index failed (HTTP {answer.status}); try again later", "upstream_error")
    raise GatewayError(400, f"The package index refused the upload (HTTP {answer.status}): {said}", "upstream_refused")
