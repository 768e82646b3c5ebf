"""The gateway in front of a real devpi-server: twine uploads, pip reads back, re-uploads the PyPI way.

What the gateway relies on in devpi-server (6.20, `devpi_server/views.py` PyPIView.submit), checked here
or in tests/test_filename_agreement.py:

- devpi files an upload under the form's `name` (normalized) and its `version` string, not under the
  filename. Of the filename it checks only that it ends in a known archive extension, that the normalized
  filename starts with the normalized `name` and that the `version` string occurs in it. It would store
  `zeta_extra-1.0-py3-none-any.whl` under project `zeta`. The gateway's filename checks are all that keeps
  each file in its own project.
- Of a repeated field devpi reads the last copy (webob's MultiDict), PyPI the first: the gateway refuses
  repeats.
- devpi ignores the `*_digest` fields and computes its own sha256, which its simple pages carry as
  `#sha256=` fragments. The gateway's re-upload check reads them there.
- On a non-volatile index devpi answers an identical re-upload 200 and different bytes 409. The gateway
  answers both itself before forwarding anything (PyPI's 200 no-op and 400 "File already exists").
- Its simple pages link files relatively (`../../+f/<hash>/<filename>`) below the server's base URL. The
  gateway rewrites these links to itself and serves `/<user>/<index>/+f/...` from `upstream.url`.
- `:action=remove_pkg` gets 400 "action 'remove_pkg' not supported", and nothing is removed.
- devpi verifies the gateway's Basic credential with argon2 (64 MiB, 3 passes) on every request it gets,
  reads included: about 0.2 s of CPU per request.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from tests.conftest import GatewayProcess, devpi_upstream, pip_download, start_gateway, stop, twine
from tests.dists import make_sdist, make_wheel, sha256_of
from tests.harness.devpi import Devpi
from tests.harness.forms import multipart, twine_fields, upload_body

PASSWORD = "devpi uploader password"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, devpi: Devpi) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("gateway-devpi")
    gateway = start_gateway(directory, devpi_upstream(devpi, directory))
    gateway.add_user("dana", PASSWORD)
    yield gateway
    stop(gateway.process)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def post(url: str, content_type: str, body: bytes, authorization: str) -> tuple[int, str]:
    """POST an upload body, as the gateway's client or straight to devpi; (status, reason)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(
            "POST", parts.path, body=body, headers={"Content-Type": content_type, "Authorization": authorization}
        )
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.reason
    finally:
        conn.close()


def without(snapshot: dict[str, dict[str, str]], project: str) -> dict[str, dict[str, str]]:
    return {name: files for name, files in snapshot.items() if name != project}


def test_wheel_and_sdist_reach_devpi_and_come_back_byte_for_byte(
    gw: GatewayProcess, devpi: Devpi, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "Devpi-Demo", "0.1.0")
    sdist = make_sdist(tmp_path, "Devpi-Demo", "0.1.0")
    before = devpi.snapshot()

    result = twine(gw.url, "dana", PASSWORD, wheel, sdist)
    assert result.returncode == 0, result.stdout + result.stderr

    after = devpi.snapshot()
    assert after["devpi-demo"] == {wheel.name: sha256_of(wheel), sdist.name: sha256_of(sdist)}
    assert without(after, "devpi-demo") == without(before, "devpi-demo")

    target = tmp_path / "downloaded"
    pip = pip_download(f"{gw.url}/simple/", "devpi-demo==0.1.0", target)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert sha256_of(target / wheel.name) == sha256_of(wheel)

    # The sdist as pip would fetch it (pip download of an sdist would also build it): the link on the
    # gateway's simple page, which points at the gateway, not at devpi.
    with urllib.request.urlopen(f"{gw.url}/simple/devpi-demo/") as resp:
        page = resp.read().decode()
    hrefs = [urljoin(f"{gw.url}/simple/devpi-demo/", h) for h in re.findall(r'href="([^"]+)"', page)]
    (link,) = [h for h in hrefs if urlsplit(h).path.endswith("/" + sdist.name)]
    assert link.startswith(gw.url + "/"), link
    assert link.endswith("#sha256=" + sha256_of(sdist))
    with urllib.request.urlopen(link) as resp:
        assert resp.read() == sdist.read_bytes()


def test_reupload_same_bytes_is_200_and_different_bytes_400(gw: GatewayProcess, devpi: Devpi, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "devpi-again", "1.0")
    assert twine(gw.url, "dana", PASSWORD, wheel).returncode == 0
    stored = devpi.files("devpi-again")
    assert stored == {wheel.name: sha256_of(wheel)}

    again = twine(gw.url, "dana", PASSWORD, wheel)
    assert again.returncode == 0, again.stdout + again.stderr

    (tmp_path / "changed").mkdir()
    changed = make_wheel(tmp_path / "changed", "devpi-again", "1.0", seed=b"other bytes")
    refused = twine(gw.url, "dana", PASSWORD, changed)
    output = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode != 0
    assert "400" in output and f"File already exists ('{wheel.name}'" in output, output
    assert devpi.files("devpi-again") == stored


def test_files_put_on_devpi_directly_count_as_existing(gw: GatewayProcess, devpi: Devpi, tmp_path: Path) -> None:
    """A file the gateway never saw (uploaded before it was deployed) is found on devpi's simple page."""
    wheel = make_wheel(tmp_path, "devpi-direct", "2.0")
    content_type, body = upload_body(wheel)
    assert post(devpi.upload_url, content_type, body, _basic(devpi.username, devpi.password)) == (200, "OK")

    refused = twine(gw.url, "dana", PASSWORD, wheel)
    assert refused.returncode != 0, "a project on the index is nobody's to claim"
    assert "upload-gateway project grant devpi-direct dana" in " ".join(refused.stdout.split())
    gw.cli("project", "grant", "devpi-direct", "dana")
    assert twine(gw.url, "dana", PASSWORD, wheel).returncode == 0
    (tmp_path / "changed").mkdir()
    changed = make_wheel(tmp_path / "changed", "devpi-direct", "2.0", seed=b"changed")
    refused = twine(gw.url, "dana", PASSWORD, changed)
    assert refused.returncode != 0
    assert "File already exists" in refused.stdout + refused.stderr
    assert devpi.files("devpi-direct") == {wheel.name: sha256_of(wheel)}


@pytest.mark.parametrize(
    ("name", "version", "filename", "reason"),
    [
        # devpi would store this under myproj 2; pypiserver reads it as project myproj-v2, version 1.
        pytest.param("myproj", "2", "myproj-v2-1-py3-none-any.whl", "ambiguous_filename", id="leading-v"),
        # devpi only prefix-checks: it would store zeta_extra's wheel in project zeta.
        pytest.param("zeta", "1.0", "zeta_extra-1.0-py3-none-any.whl", "name_mismatch", id="other-project"),
    ],
)
def test_filenames_devpi_would_misfile_are_refused(
    gw: GatewayProcess, devpi: Devpi, tmp_path: Path, name: str, version: str, filename: str, reason: str
) -> None:
    data = make_wheel(tmp_path, "payload", "1.0").read_bytes()
    fields = twine_fields("payload-1.0-py3-none-any.whl", data, name=name, version=version)
    content_type, body = multipart(fields, [("content", filename, data)])
    before = devpi.snapshot()

    status, phrase = post(f"{gw.url}/legacy/", content_type, body, _basic("dana", PASSWORD))

    assert status == 400, phrase
    assert f"reason={reason}" in gw.log_text()
    assert devpi.snapshot() == before


def test_devpi_refuses_remove_pkg_itself(devpi: Devpi, tmp_path: Path) -> None:
    """Even with `remove_pkg` allowed by the gateway's policy, devpi removes nothing (it has no such action)."""
    wheel = make_wheel(tmp_path, "devpi-keep", "1.0")
    content_type, body = upload_body(wheel)
    service = _basic(devpi.username, devpi.password)
    assert post(devpi.upload_url, content_type, body, service) == (200, "OK")

    content_type, body = multipart([(":action", "remove_pkg"), ("name", "devpi-keep"), ("version", "1.0")])
    status, phrase = post(devpi.upload_url, content_type, body, service)
    assert (status, phrase) == (400, "action 'remove_pkg' not supported")
    assert devpi.files("devpi-keep") == {wheel.name: sha256_of(wheel)}


def test_pep_691_json_through_devpi(gw: GatewayProcess, devpi: Devpi, tmp_path: Path) -> None:
    """devpi's own JSON (or its HTML, when it has none) comes back with the gateway's URLs; the file is the one sent."""
    wheel = make_wheel(tmp_path, "devpi-json", "1.0")
    assert twine(gw.url, "dana", PASSWORD, wheel).returncode == 0
    request = urllib.request.Request(
        f"{gw.url}/simple/devpi-json/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request) as resp:
        assert resp.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
        data = json.loads(resp.read())
    assert data["name"] == "devpi-json" and data["versions"] == ["1.0"]
    (entry,) = data["files"]
    assert entry["filename"] == wheel.name and entry["hashes"]["sha256"] == sha256_of(wheel)
    assert entry["url"].startswith(gw.url + "/") and entry["size"] == wheel.stat().st_size
    with urllib.request.urlopen(entry["url"]) as resp:
        assert resp.read() == wheel.read_bytes()
