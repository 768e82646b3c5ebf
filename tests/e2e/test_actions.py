"""Actions other than file_upload: refused by default, passed on to the index when policy allows them."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import GatewayFactory, Index, twine
from tests.dists import make_wheel
from tests.e2e.test_upload import basic, raw_post
from tests.harness.forms import multipart

PASSWORD = "actions password here"


def remove(url: str, user: str, name: str, version: str) -> tuple[int, str]:
    content_type, body = multipart([(":action", "remove_pkg"), ("name", name), ("version", version)])
    resp = raw_post(url, "/legacy/", {"Content-Type": content_type, "Authorization": basic(user, PASSWORD)}, body)
    return resp.status, resp.reason


def test_remove_pkg_needs_policy_and_an_owner(gateway_factory: GatewayFactory, index: Index, tmp_path: Path) -> None:
    closed = gateway_factory()
    opened = gateway_factory(policy={"allowed_actions": ["file_upload", "remove_pkg"]})
    for gw in (closed, opened):
        gw.add_user("olga", PASSWORD)
        gw.add_user("max", PASSWORD)
    wheel = make_wheel(tmp_path, "removable", "1.0")
    assert twine(opened.url, "olga", PASSWORD, wheel).returncode == 0
    opened.cli("project", "grant", "removable", "max", "--role", "maintainer")
    closed.cli("project", "grant", "removable", "olga")

    status, reason = remove(closed.url, "olga", "removable", "1.0")
    assert status == 400 and "Unsupported ':action'" in reason
    status, reason = remove(opened.url, "max", "removable", "1.0")
    assert status == 403 and "owners only" in reason
    assert wheel.name in index.files()
    status, reason = remove(opened.url, "olga", "removable", "1.0")
    assert status == 200, reason
    assert wheel.name not in index.files()
