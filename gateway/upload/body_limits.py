"""How large an upload body may be, and the refusals of a body out of shape: too large, fields after the file,
an end other than the closing delimiter. Pure."""

from __future__ import annotations

from gateway.config import LimitsConfig
from gateway.errors import GatewayError
from gateway.upload.form import MAX_FORM_BYTES

MAX_HEAD_BYTES = 2 * MAX_FORM_BYTES


def max_body(limits: LimitsConfig) -> int:
    """The largest upload body: the file's limit plus room for the form around it."""
    return limits.max_file_size + MAX_HEAD_BYTES


def file_too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"File too large. Limit is {limit // 2**20} MiB per file", "file_too_large")


def fields_after_file() -> GatewayError:
    return GatewayError(
        400,
        "Form fields after the file: send every field before the 'content' part (as twine does)",
        "fields_after_file",
    )


def unexpected_end() -> GatewayError:
    return GatewayError(
        400,
        "The upload body does not end right after its last part: close it with CRLF '--boundary--' CRLF",
        "unexpected_layout",
    )
