"""What the index's answer to an upload means, on every kind of answer an index gives."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.upload.answers import UpstreamAnswer, answered_early, fault_of, raise_for, settle


@pytest.mark.parametrize(
    ("answer", "meaning"),
    [
        (UpstreamAnswer(200, "OK", ""), "stored"),
        (UpstreamAnswer(201, "Created", ""), "stored"),
        (UpstreamAnswer(409, "Conflict", ""), "conflict"),
        (UpstreamAnswer(400, "Bad Request", "File already exists"), "conflict"),
        (UpstreamAnswer(400, "Package 'demo-1.0.tar.gz' already exists!", ""), "conflict"),
    ],
)
def test_a_success_is_stored_and_a_duplicate_is_a_conflict(answer: UpstreamAnswer, meaning: str) -> None:
    assert settle(answer) == meaning
    assert fault_of(answer) is None


@pytest.mark.parametrize(
    ("answer", "status", "reason", "fault"),
    [
        (UpstreamAnswer(401, "Unauthorized", ""), 502, "upstream_auth", ("auth", "upstream_auth")),
        (UpstreamAnswer(403, "Forbidden", ""), 502, "upstream_auth", ("auth", "upstream_auth")),
        (UpstreamAnswer(413, "Too Large", "<pre>over 10 MiB</pre>"), 413, "upstream_too_large", None),
        (UpstreamAnswer(400, "Bad Request", "<p>bad   metadata</p>"), 400, "upstream_refused", None),
        (UpstreamAnswer(302, "Found", ""), 400, "upstream_refused", None),
        (UpstreamAnswer(500, "Internal Server Error", ""), 502, "upstream_error", ("status_5xx", "upstream_error")),
        (UpstreamAnswer(503, "Unavailable", ""), 502, "upstream_error", ("status_5xx", "upstream_error")),
    ],
)
def test_every_other_answer_is_a_refusal_and_the_index_own_failures_are_faults(
    answer: UpstreamAnswer, status: int, reason: str, fault: tuple[str, str] | None
) -> None:
    with pytest.raises(GatewayError) as refused:
        settle(answer)
    assert (refused.value.status, refused.value.reason) == (status, reason)
    assert fault_of(answer) == fault


def test_the_index_own_words_pass_on_one_line_without_html() -> None:
    with pytest.raises(GatewayError) as refused:
        raise_for(UpstreamAnswer(400, "Bad Request", "<html><pre>Invalid\n  version</pre></html>"))
    assert refused.value.message == "The package index refused the upload (HTTP 400): Invalid version"
    with pytest.raises(GatewayError) as refused:
        raise_for(UpstreamAnswer(413, "Request Entity Too Large", ""))
    assert refused.value.message == "The package index refused the file as too large: Request Entity Too Large"


def test_a_success_before_the_whole_body_is_the_index_fault() -> None:
    early = answered_early(UpstreamAnswer(200, "OK", ""))
    assert (early.status, early.reason) == (502, "upstream_error")
    assert "before it had the whole upload (HTTP 200)" in early.message
