"""What the index's answer to an upload means: stored, a duplicate, a fault of the index, or a refusal to pass on.

The one place that reads an upload's answer: `Upstream.post_upload` counts and logs the faults (`fault_of`), the
flow settles on the rest. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from gateway.errors import GatewayError

_TAGS = re.compile(r"<[^>]+>")
_PRE = re.compile(r"<pre>(.*?)</pre>", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class UpstreamAnswer:
    """The index's answer to an upload POST; `reason` and `text` already show its URLs as the gateway's."""

    status: int
    reason: str
    text: str


def upstream_message(text: str) -> str:
    """The index's own words, without HTML, on one bounded line."""
    pre = _PRE.search(text)
    plain = _TAGS.sub(" ", pre.group(1) if pre else text)
    return " ".join(plain.split())[:200]


def is_conflict(answer: UpstreamAnswer) -> bool:
    """pypiserver: 409, or 400 "already exists" for twine; devpi: 409; Gitea, GitLab: 400 "already…"."""
    return answer.status == 409 or (answer.status == 400 and "already" in (answer.reason + answer.text).lower())


def fault_of(answer: UpstreamAnswer) -> tuple[str, str] | None:
    """(`upload_gateway_upstream_errors_total` kind, reason code) when an answer is the index's own failure, for the
    operator's log: a 5xx, or a refusal of the gateway's credential. None for any other answer."""
    if answer.status >= 500:
        return "status_5xx", "upstream_error"
    if answer.status in (401, 403):
        return "auth", "upstream_auth"
    return None


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


def settle(answer: UpstreamAnswer) -> Literal["stored", "conflict"]:
    """What the answer to a file upload means: stored, or a conflict (the file is there already); any other answer
    is raised (`raise_for`)."""
    if is_conflict(answer):
        return "conflict"
    raise_for(answer)
    return "stored"


def answered_early(answer: UpstreamAnswer) -> GatewayError:
    """An answer that is no refusal (`raise_for` passed it), given before the index had the whole body (gunicorn
    answers 500 when it kills a worker that took too long): the index's fault, not the client's."""
    return GatewayError(
        502,
        f"The package index answered before it had the whole upload (HTTP {answer.status}); try again later",
        "upstream_error",
    )
