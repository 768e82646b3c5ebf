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
        self.message = one_line(message)
        super().__init__(self.message)
        self.status = status
        self.reason = reason
        self.hint = hint
        self.headers = dict(headers or {})

    def __reduce__(self) -> tuple[type[GatewayError], tuple[int, str, str], dict[str, object]]:
        """Picklable (the read path renders large pages in a worker process), subclasses as the base type."""
        return GatewayError, (self.status, self.message, self.reason), {"hint": self.hint, "headers": self.headers}


def one_line(text: str) -> str:
    """One printable, bounded line: no CR/LF or other control characters can reach a header."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    if len(cleaned) > MAX_REASON_LENGTH:
        cleaned = cleaned[: MAX_REASON_LENGTH - 3] + "..."
    return cleaned.strip()


def reason_phrase(message: str) -> str:
    """The message as an HTTP reason phrase: ASCII only.

    aiohttp writes the status line as UTF-8 while requests (so twine) decodes it as latin-1, so anything
    beyond ASCII would arrive garbled; the body carries the exact text.
    """
    return message.encode("ascii", "replace").decode("ascii")


def store_unavailable() -> GatewayError:
    """The store's database could not be reached or was busy (`StoreFailure.outage`): a fault worth a retry, so a
    503 that says so, never the 500 of a bug."""
    return GatewayError(
        503, "The gateway's database is unavailable; retry shortly", "store_unavailable", headers={"Retry-After": "5"}
    )
