"""Warehouse's own refusal cases (tests/unit/forklift/test_legacy.py, see tests/warehouse_cases.py) sent to the
gateway as real uploads in front of pypiserver: every one is refused with a 4xx, nothing reaches the index, and
the status line carries PyPI's message (the few that differ on purpose say why in the case)."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import GatewayProcess, Index, Relay, index_upstream, start_gateway, stop, twine
from tests.dists import make_wheel
from tests.harness.forms import multipart
from tests.warehouse_cases import CASES, NAME, SKIPPED, Case, form_fields

PASSWORD = "warehouse cases password"


@dataclass
class Target:
    gateway: GatewayProcess
    relay: Relay
    index: Index

    def upload(self, case: Case) -> tuple[int, str, str]:
        data = case.build() if case.build is not None else b""
        files = [("content", case.filename, data)] if case.build is not None else []
        content_type, body = multipart(form_fields(case, data), files)
        if case.content_type is None:
            body = body.replace(b"Content-Type: application/octet-stream\r\n", b"")
        elif case.content_type != "application/octet-stream":
            body = body.replace(
                b"Content-Type: application/octet-stream", f"Content-Type: {case.content_type}".encode()
            )
        auth = base64.b64encode(f"wanda:{PASSWORD}".encode()).decode()
        head = (
            f"POST /legacy/ HTTP/1.1\r\nHost: gateway\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
        )
        parts = urlsplit(self.gateway.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
            try:
                sock.sendall(head.encode() + body)
            except OSError:
                pass
            answer = sock.makefile("rb").read().decode("utf-8", "replace")
        status_line, _, rest = answer.partition("\r\n")
        _, status, reason = status_line.split(" ", 2)
        return int(status), reason, rest.split("\r\n\r\n", 1)[-1]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, index: Index) -> Iterator[Target]:
    directory = tmp_path_factory.mktemp("warehouse")
    relay = Relay(int(urlsplit(index.url).port or 0))
    gw = start_gateway(directory / "gw", index_upstream(index, directory) | {"url": relay.url})
    gw.add_user("wanda", PASSWORD)
    gw.cli("project", "grant", NAME, "wanda")  # the project is hers: only the checks under test can refuse
    yield Target(gw, relay, index)
    stop(gw.process)
    relay.close()


# Refusals of Warehouse's that the gateway does not make, on purpose (see each case's `differs`).
ACCEPTED_ON_PURPOSE = frozenset(
    {
        "TestFileUpload::test_upload_fails_invalid_content_type[None]",
        "TestFileUpload::test_upload_fails_pep427[Some_Thing-...]",
    }
)
REFUSALS = [case for case in CASES if case.id not in ACCEPTED_ON_PURPOSE]
RESULTS: dict[str, bool] = {}


@pytest.mark.parametrize("case", REFUSALS, ids=[case.id for case in REFUSALS])
def test_warehouse_refusal(target: Target, case: Case) -> None:
    before_files, before_posts = target.index.files(), len(target.relay.requests())
    status, reason, body = target.upload(case)
    assert 400 <= status < 500, (status, reason)
    assert target.index.files() == before_files, "nothing reached the index"
    assert [r for r in target.relay.requests()[before_posts:] if r.method == "POST"] == []
    expected = case.message.encode("ascii", "replace").decode("ascii")
    RESULTS[case.id] = status == case.status and reason == expected and body.startswith(f"{status} {case.message}")
    if not case.differs:
        assert (status, reason) == (case.status, expected)
        assert body.startswith(f"{status} {case.message}")


def test_warehouse_messages_matched(target: Target) -> None:
    """The count the issue asks for: how many of Warehouse's refusals the gateway answers in PyPI's words."""
    if len(RESULTS) < len(REFUSALS):
        pytest.skip("run with the whole module to count")
    exact = sum(RESULTS.values())
    print(
        f"\n{exact} of {len(CASES)} portable Warehouse refusal cases answered with PyPI's exact status and message;"
        f" {len(ACCEPTED_ON_PURPOSE)} accepted and {sum(1 for c in REFUSALS if c.differs)} refused in other words on"
        f" purpose; {len(SKIPPED)} not portable (they hinge on PyPI's own state)"
    )
    assert exact >= len([case for case in REFUSALS if not case.differs])


@pytest.mark.parametrize("case_id", sorted(ACCEPTED_ON_PURPOSE))
def test_accepted_on_purpose(target: Target, case_id: str) -> None:
    """After the refusals (their files must not be on the index first): what the gateway takes where PyPI does not."""
    (case,) = [case for case in CASES if case.id == case_id]
    assert case.differs
    status, reason, _ = target.upload(case)
    assert status == 200, reason


def test_every_skipped_case_says_why() -> None:
    assert all(skipped.reason for skipped in SKIPPED)
    assert len({case.id for case in CASES} | {skipped.id for skipped in SKIPPED}) == len(CASES) + len(SKIPPED)


@pytest.mark.parametrize("platform_tags", ["pypi", "any"])
def test_linux_wheels_are_a_policy(index: Index, tmp_path: Path, platform_tags: str) -> None:
    gw = start_gateway(tmp_path / "gw", index_upstream(index, tmp_path), policy={"platform_tags": platform_tags})
    try:
        gw.add_user("lina", PASSWORD)
        wheel = make_wheel(tmp_path, f"fleet-tool-{platform_tags}", "1.0")
        linux = wheel.with_name(wheel.name.replace("-any.whl", "-linux_x86_64.whl"))
        wheel.rename(linux)
        result = twine(gw.url, "lina", PASSWORD, linux)
        output = " ".join((result.stdout + result.stderr).split())
        if platform_tags == "any":
            assert result.returncode == 0, output
            assert linux.name in index.files()
        else:
            assert result.returncode != 0
            assert f"Binary wheel '{linux.name}' has an unsupported platform tag 'linux_x86_64'." in output
            assert linux.name not in index.files()
    finally:
        stop(gw.process)
