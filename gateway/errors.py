"""The one error type handlers raise; `app.error_middleware` renders it.

NOTE: twine shows the HTTP reason phrase (`"403 Client Error: <reason> for url"`) and `--skip-existing`
greps it, so the user-facing message travels in the reason phrase *and* the body, as PyPI does.
"""

from __future__ import annotations

from collections.abc import Mapping

MAX_REASON_LENGTH = 400


class GatewayError(Exception):
    """A refusal or fault with the HTTP status, a one-line message and a bounded reason code.

    `reason` is the label of `upload_gateway_uploads_total{reason}` and the code in docs/errors.md:
    a fixed identifier, never user text.
    """

    def __init__(
        self,
        status: int,
        message: str,
        reason: str,
        *,
        hint: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = one_line(message)
        self.reason = reason
        self.hint = hint
        self.headers = dict(headers or {})


def one_line(text: str) -> str:
    """Make `text` safe for an HTTP reason phrase: latin-1, no control characters, bounded."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    cleaned = cleaned.encode("latin-1", "replace").decode("latin-1")
    if len(cleaned) > MAX_REASON_LENGTH:
        cleaned = cleaned[: MAX_REASON_LENGTH - 3] + "..."
    return cleaned.strip()
