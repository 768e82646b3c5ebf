"""New projects belong to whoever's upload created them, and only once the index stored it; projects the index
already has belong to nobody until an administrator says so."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import GatewayFactory, GatewayProcess, Index, twine
from tests.dists import make_wheel
from tests.e2e.test_upload import basic
from tests.harness.forms import upload_body

PASSWORD = "claims test password"


def owners(gw: GatewayProcess, *users: str) -> dict[str, list[str]]:
    """{user: [projects they own]}."""
    found = {}
    for user in users:
        rows = json.loads(gw.cli("project", "list", user, "--json").stdout)
        found[user] = [row["project"] for row in rows if row["role"] == "owner"]
    return found


def audit_events(gw: GatewayProcess) -> list[str]:
    return [json.loads(line)["event"] for line in gw.cli("audit", "--json").stdout.splitlines()]


def test_a_refused_first_upload_owns_nothing(gateway_factory: GatewayFactory, index: Index, tmp_path: Path) -> None:
    gw = gateway_factory()
    gw.add_user("ann", PASSWORD)
    gw.add_user("ben", PASSWORD)
    wheel = make_wheel(tmp_path, "never-claimed", "1.0")
    content_type, body = upload_body(wheel, sha256_digest=hashlib.sha256(b"not the file").hexdigest())
    gwp = urlsplit(gw.url)
    with socket.create_connection((gwp.hostname, gwp.port), timeout=30) as sock:
        head = (
            f"POST /legacy/ HTTP/1.1\r\nHost: g\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Authorization: {basic('ann', PASSWORD)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        assert sock.makefile("rb").readline().split()[1] == b"400"
    assert owners(gw, "ann") == {"ann": []}
    assert "project.claimed" not in audit_events(gw)
    assert wheel.name not in index.files()
    # The name is still free: the next uploader, whoever it is, creates the project.
    assert twine(gw.url, "ben", PASSWORD, wheel).returncode == 0
    assert owners(gw, "ann", "ben") == {"ann": [], "ben": ["never-claimed"]}


def slow_upload(gw: GatewayProcess, user: str, wheel: Path, results: dict[str, bytes], start: threading.Event) -> None:
    """An upload sent in slices, so that two of them overlap at the gateway."""
    content_type, body = upload_body(wheel)
    parts = urlsplit(gw.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        head = (
            f"POST /legacy/ HTTP/1.1\r\nHost: g\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Authorization: {basic(user, PASSWORD)}\r\nConnection: close\r\n\r\n"
        )
        start.wait()
        sock.sendall(head.encode())
        step = len(body) // 8
        try:
            for offset in range(0, len(body), step):
                sock.sendall(body[offset : offset + step])
                time.sleep(0.15)
        except OSError:
            pass  # refused before the end: the gateway stopped reading
        results[user] = sock.makefile("rb").readline()


def test_two_first_uploads_of_one_name_give_one_owner(
    gateway_factory: GatewayFactory, index: Index, tmp_path: Path
) -> None:
    gw = gateway_factory()
    gw.add_user("cleo", PASSWORD)
    gw.add_user("dirk", PASSWORD)
    (tmp_path / "c").mkdir()
    (tmp_path / "d").mkdir()
    wheels = {
        "cleo": make_wheel(tmp_path / "c", "raced-name", "1.0", payload_size=2**20),
        "dirk": make_wheel(tmp_path / "d", "raced-name", "1.1", payload_size=2**20),
    }
    results: dict[str, bytes] = {}
    start = threading.Event()
    threads = [threading.Thread(target=slow_upload, args=(gw, user, wheels[user], results, start)) for user in wheels]
    for thread in threads:
        thread.start()
    start.set()
    for thread in threads:
        thread.join()
    statuses = sorted(line.split()[1] for line in results.values())
    assert statuses == [b"200", b"403"], results
    winner = next(user for user, line in results.items() if b" 200 " in line)
    loser = next(user for user in wheels if user != winner)
    assert b"is being created by another user's upload" in results[loser]
    assert owners(gw, "cleo", "dirk") == {winner: ["raced-name"], loser: []}
    on_index = [name for name in index.files() if name.startswith("raced_name-")]
    assert on_index == [wheels[winner].name], "the other user's file never reached the index"


def test_import_adopts_the_index_projects(gateway_factory: GatewayFactory, index: Index, tmp_path: Path) -> None:
    for name in ("legacy-one", "legacy-two"):
        wheel = make_wheel(tmp_path, name, "1.0")
        (index.packages / wheel.name).write_bytes(wheel.read_bytes())
    gw = gateway_factory()
    gw.add_user("eve", PASSWORD)
    gw.add_user("fay", PASSWORD)
    result = gw.cli("project", "import")
    assert "new to the gateway" in result.stderr
    (tmp_path / "new").mkdir()
    stranger = twine(gw.url, "eve", PASSWORD, make_wheel(tmp_path / "new", "legacy-one", "2.0"))
    output = " ".join((stranger.stdout + stranger.stderr).split())
    assert stranger.returncode != 0 and "403" in output
    assert "has no owner in the gateway: an administrator must grant it first" in output
    assert "upload-gateway project grant legacy-one eve" in output
    # A grant opens it; importing again changes nothing that is known already.
    gw.cli("project", "grant", "legacy-one", "fay")
    assert twine(gw.url, "fay", PASSWORD, make_wheel(tmp_path / "new", "legacy-one", "2.1")).returncode == 0
    assert "; 0 new to the gateway" in gw.cli("project", "import", "--owner", "eve").stderr
    assert owners(gw, "eve", "fay") == {"eve": [], "fay": ["legacy-one"]}
    assert "project.imported" in audit_events(gw)


def test_import_with_an_owner(gateway_factory: GatewayFactory, index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "legacy-owned", "1.0")
    (index.packages / wheel.name).write_bytes(wheel.read_bytes())
    gw = gateway_factory()
    gw.add_user("gus", PASSWORD)
    gw.cli("project", "import", "--owner", "gus")
    assert "legacy-owned" in owners(gw, "gus")["gus"]
    (tmp_path / "next").mkdir()
    assert twine(gw.url, "gus", PASSWORD, make_wheel(tmp_path / "next", "legacy-owned", "1.1")).returncode == 0
