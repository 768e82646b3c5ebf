"""Attacks an independent review found on the re-encoding upload path, kept as tests of their fixes.

Each test drives the real gateway (a subprocess) in front of a real pypiserver (and devpi where it matters),
over raw sockets, and asserts what the promise says must hold. Each docstring says what the attack did before
its fix.
"""

from __future__ import annotations

import base64
import json
import socket
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import GatewayProcess, Index, Relay, index_upstream, start_gateway, stop, twine
from tests.dists import make_wheel
from tests.harness.forms import multipart, read_multipart, twine_fields

PASSWORD = "review attacks password"


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()


def request_head(gw: GatewayProcess, user: str, content_type: str, length: int, *extra: str) -> bytes:
    lines = [
        "POST /legacy/ HTTP/1.1",
        f"Host: {urlsplit(gw.url).netloc}",
        f"Authorization: {basic(user)}",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}",
        "Connection: close",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(gw: GatewayProcess, timeout: float = 30) -> socket.socket:
    parts = urlsplit(gw.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def post(gw: GatewayProcess, user: str, content_type: str, body: bytes) -> tuple[int, str]:
    with connect(gw) as sock:
        try:
            sock.sendall(request_head(gw, user, content_type, len(body)) + body)
        except OSError:
            pass
        answer = sock.makefile("rb").read().decode(errors="replace")
    status = int(answer.split()[1])
    return status, answer


def owners(gw: GatewayProcess, *users: str) -> dict[str, list[str]]:
    found = {}
    for user in users:
        rows = json.loads(gw.cli("project", "list", user, "--json").stdout)
        found[user] = sorted(row["project"] for row in rows if row["role"] == "owner")
    return found


def claims(gw: GatewayProcess) -> list[tuple[str, str, int, float]]:
    db = sqlite3.connect(gw.config.parent / "gateway.db", timeout=10)
    try:
        return db.execute("SELECT project, user_id, holders, expires FROM project_claims").fetchall()
    finally:
        db.close()


def age_claims(gw: GatewayProcess, seconds: float) -> None:
    """What `seconds` of wall-clock time do to the claims: move their expiry back (an hour passing, without the
    wait). A real attacker just keeps the upload open: see test_a_slow_upload_is_bounded_by_no_timeout."""
    db = sqlite3.connect(gw.config.parent / "gateway.db", timeout=10)
    try:
        db.execute("UPDATE project_claims SET expires = expires - ?", (seconds,))
        db.commit()
    finally:
        db.close()


@dataclass
class Setup:
    gateway: GatewayProcess
    relay: Relay
    index: Index
    directory: Path

    def index_posts(self) -> list[dict[str, list[bytes]]]:
        """Every complete POST the index received, as {field: [values]}."""
        found = []
        for request in self.relay.requests():
            if request.method != "POST":
                continue
            fields: dict[str, list[bytes]] = {}
            for part in read_multipart(request.headers["content-type"], request.body):
                fields.setdefault(part.name, []).append(part.data if part.filename is None else b"<file>")
            found.append(fields)
        return found


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, index: Index) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("review")
    relay = Relay(int(urlsplit(index.url).port or 0))
    gw = start_gateway(
        directory / "gw",
        index_upstream(index, directory) | {"url": relay.url},
        policy={"allowed_actions": ["file_upload", "remove_pkg"]},
    )
    for user in ("olga", "mel", "mallory", "bob"):
        gw.add_user(user, PASSWORD)
    yield Setup(gw, relay, index, directory)
    stop(gw.process)
    relay.close()


def field_parts(fields: list[tuple[str, str]], boundary: str) -> bytes:
    return b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields
    )


def file_part(filename: str, data: bytes, boundary: str) -> bytes:
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
    )


# --------------------------------------------------------------------------------------------------------------
# Finding 1: `:action` sent after the file is never decided on, but is forwarded to the index.
# --------------------------------------------------------------------------------------------------------------


def test_action_after_the_file_lets_a_maintainer_remove_a_release(setup: Setup) -> None:
    """policy.allowed_actions = [file_upload, remove_pkg]; removal is for owners only (README, policy.py).

    mel is only a maintainer of shared-pkg. She sends an ordinary sdist upload of shared-pkg 1.0 with no `:action`
    before the file and `:action=remove_pkg` after it. The head has no `:action`, so the flow spools the body and
    decides on the whole form: `check_action` returns "remove_pkg" (it is allowed), and `_spooled` then validates
    and authorizes the request as a *file upload* (maintainers may upload) — and forwards the fields, `:action`
    included, to the index. pypiserver executes `remove_pkg name=shared_pkg version=1.0` and deletes olga's wheel.
    The gateway answers 200 and records the sdist as uploaded, though the index never stored it.

    Should: an upload whose `:action` is not file_upload is an action (owner check), or refused; the canonical body
    of an upload must carry `:action=file_upload` whatever the client sent.
    """
    gw, index = setup.gateway, setup.index
    (setup.directory / "olga").mkdir()
    wheel = make_wheel(setup.directory / "olga", "shared-pkg", "1.0")
    assert twine(gw.url, "olga", PASSWORD, wheel).returncode == 0
    gw.cli("project", "grant", "shared-pkg", "mel", "--role", "maintainer")
    assert wheel.name in index.files()

    # The direct way is refused, as it should be.
    content_type, body = multipart([(":action", "remove_pkg"), ("name", "shared_pkg"), ("version", "1.0")])
    status, answer = post(gw, "mel", content_type, body)
    assert status == 403 and "owners only" in answer, answer
    assert wheel.name in index.files()

    # The same removal, with `:action` after a file. The file is big enough (1 MiB) not to come in the same read
    # as the head, as any real upload: the head the flow decides on has no `:action` at all.
    (setup.directory / "mel").mkdir()
    carrier = make_wheel(setup.directory / "mel", "shared-pkg", "1.0", payload_size=2**20)
    filename = "shared_pkg-1.0-1-py3-none-any.whl"  # same version, another file (a build tag): not a duplicate
    data = carrier.read_bytes()
    fields = [(k, v) for k, v in twine_fields(filename, data, name="shared_pkg") if k != ":action"]
    boundary = "reviewboundary1"
    body = (
        field_parts(fields, boundary)
        + file_part(filename, data, boundary)
        + field_parts([(":action", "remove_pkg")], boundary)
        + f"--{boundary}--\r\n".encode()
    )
    with connect(gw) as sock:
        sock.sendall(request_head(gw, "mel", f"multipart/form-data; boundary={boundary}", len(body)) + body[:4096])
        time.sleep(0.5)
        sock.sendall(body[4096:])
        answer = sock.makefile("rb").read().decode(errors="replace")
    status = int(answer.split()[1])
    forwarded_actions = [post.get(":action") for post in setup.index_posts()]
    recorded = json.loads(gw.cli("audit", "--json").stdout.splitlines()[-1])
    assert wheel.name in index.files(), (
        f"maintainer mel removed owner olga's release through an upload (gateway answered {status}: "
        f"{answer.splitlines()[0]}); the index received :action values {forwarded_actions}; "
        f"the gateway's last audit event: {recorded}"
    )


# --------------------------------------------------------------------------------------------------------------
# Finding 2: the decision is taken once at the start of the body and never again, and a claim expires.
# --------------------------------------------------------------------------------------------------------------


class SlowUpload:
    """An upload whose head (fields and the file's first bytes) goes now and the rest when told."""

    def __init__(self, gw: GatewayProcess, user: str, path: Path) -> None:
        data = path.read_bytes()
        self.content_type, self.body = multipart(
            twine_fields(path.name, data), [("content", path.name, data)], boundary="slowboundary"
        )
        self.sock = connect(gw, timeout=120)
        self.sock.sendall(request_head(gw, user, self.content_type, len(self.body)))
        self.cut = len(self.body) - 4096  # the head, the file but its last 4 KiB
        self.sock.sendall(self.body[: self.cut])

    def finish(self) -> int:
        self.sock.sendall(self.body[self.cut :])
        line = self.sock.makefile("rb").readline()
        self.sock.close()
        return int(line.split()[1])


def wait_for(predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@dataclass
class Embedded:
    gateway: GatewayProcess
    packages: Path
    directory: Path

    def files(self) -> list[str]:
        return sorted(p.name for p in self.packages.iterdir())


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    """The gateway with its embedded pypiserver (waitress, as `make run` deploys it). The shared test pypiserver
    runs one gunicorn sync worker, which a slow upload blocks (and its 30 s worker timeout kills): that is a
    property of that test server, not of the attack."""
    directory = tmp_path_factory.mktemp("review-embedded")
    packages = directory / "packages"
    gw = start_gateway(directory / "gw", {"url": "embedded", "data_dir": str(packages)})
    for user in ("olga", "mel", "mallory", "bob"):
        gw.add_user(user, PASSWORD)
    yield Embedded(gw, packages, directory)
    stop(gw.process)


def test_an_expired_claim_lets_a_stranger_plant_a_file_in_the_new_owners_project(embedded: Embedded) -> None:
    """mallory starts the first upload of a new name, `contested`, and keeps it open (a byte every 59 s keeps
    limits.read_timeout at bay; upstream.timeout only starts once the body is sent). Once the claim expires (it
    outlives the longest upload the limits allow; simulated here by ageing the claim row) bob's upload of
    `contested` takes the claim, succeeds, and bob owns the project. Then mallory completes her body: nothing is
    re-checked, the index stores her wheel in bob's project and the gateway answers 200. mallory has no role on
    `contested`.

    Should: before the last byte goes, the claim must still be held by this upload (or the user must have a role
    on the project by then); a lost claim aborts the upstream request. Bound the claim to the upload's life, not
    to a wall-clock hour.
    """
    gw, index = embedded.gateway, embedded
    (embedded.directory / "m").mkdir()
    (embedded.directory / "b").mkdir()
    evil = make_wheel(embedded.directory / "m", "contested", "6.6.6", payload_size=2**20, seed=b"mallory")
    legit = make_wheel(embedded.directory / "b", "contested", "1.0", seed=b"bob")

    slow = SlowUpload(gw, "mallory", evil)
    wait_for(lambda: any(row[0] == "contested" for row in claims(gw)))
    # While mallory's claim is live bob is refused, as designed ...
    refused = twine(gw.url, "bob", PASSWORD, legit)
    assert refused.returncode != 0 and "being created by another user" in refused.stdout + refused.stderr
    # ... once the claim's life is over it is not.
    age_claims(gw, 10 * 3600)
    assert twine(gw.url, "bob", PASSWORD, legit).returncode == 0
    assert owners(gw, "bob", "mallory") == {"bob": ["contested"], "mallory": []}

    status = slow.finish()
    planted = evil.name in index.files()
    assert not planted, (
        f"mallory (no role on 'contested', owned by bob) stored {evil.name} in it; gateway answered {status}; "
        f"owners now {owners(gw, 'bob', 'mallory')}"
    )


def test_a_role_removed_during_an_upload_does_not_stop_it(embedded: Embedded) -> None:
    """README: "A removed role stops uploads at once." mel, a maintainer of team-pkg, starts an upload; the owner
    takes her role away (`project remove team-pkg mel`) before the body ends; the upload still lands (200, file on
    the index). Same for a token revoked mid-upload. Lower severity than the claim case (mel had the role when she
    started), but the same cause: authorization is never re-checked before the last byte goes.
    """
    gw, index = embedded.gateway, embedded
    (embedded.directory / "t").mkdir()
    assert twine(gw.url, "olga", PASSWORD, make_wheel(embedded.directory / "t", "team-pkg", "1.0")).returncode == 0
    gw.cli("project", "grant", "team-pkg", "mel", "--role", "maintainer")
    wheel = make_wheel(embedded.directory / "t", "team-pkg", "2.0", payload_size=2**20)
    slow = SlowUpload(gw, "mel", wheel)
    time.sleep(1)
    gw.cli("project", "remove", "team-pkg", "mel")
    status = slow.finish()
    assert wheel.name not in index.files(), f"upload by a removed maintainer was stored (status {status})"


def test_a_slow_but_steady_upload_succeeds(tmp_path: Path, index: Index) -> None:
    """An upload may take far longer than upstream.timeout (here 2 s) as long as each chunk comes within
    limits.read_timeout (here 3 s): so a claim can outlive its lifetime while its upload still runs, which is why
    the claim is checked again before the last byte (see the expired-claim test)."""
    gw = start_gateway(
        tmp_path / "gw",
        index_upstream(index, tmp_path) | {"timeout": "2s"},
        limits={"read_timeout": "3s"},
    )
    try:
        gw.add_user("slowpoke", PASSWORD)
        wheel = make_wheel(tmp_path, "dribbled", "1.0", payload_size=64 * 1024)
        data = wheel.read_bytes()
        content_type, body = multipart(twine_fields(wheel.name, data), [("content", wheel.name, data)])
        started = time.monotonic()
        with connect(gw) as sock:
            sock.sendall(request_head(gw, "slowpoke", content_type, len(body)))
            step = len(body) // 8 + 1
            for offset in range(0, len(body), step):
                sock.sendall(body[offset : offset + step])
                time.sleep(1.5)
            line = sock.makefile("rb").readline()
        assert line.split()[1] == b"200", line
        assert time.monotonic() - started > 10
        assert wheel.name in index.files()
    finally:
        stop(gw.process)


# --------------------------------------------------------------------------------------------------------------
# Finding 3: a filename validation accepts but the encoder refuses: 500 and a traceback.
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filename",
    [
        "odd_name_pkg-1.0-1 x-py3-none-any.whl",  # build tag "1 x"
        "odd_name_pkg-1.0-1;x-py3-none-any.whl",
        "odd_name_pkg-1.0 -py3-none-any.whl",  # version "1.0 "
        "odd_name_pkg-1.0-py3-none-any x.whl",  # platform tag "any x"
    ],
)
def test_odd_wheel_filenames_are_a_4xx_not_a_500(setup: Setup, filename: str) -> None:
    """packaging's parse_wheel_filename accepts spaces and punctuation in build tags, tags and around the version;
    validate_upload passes them, then encoding.encode raises ValueError ("not a validated distribution filename"),
    which error_middleware turns into 500 with a logged traceback. Nothing reaches the index (it fails closed).

    Should: 400 invalid_filename from validation (the encoder's character class, [A-Za-z0-9._+!-], enforced there).
    """
    gw = setup.gateway
    (setup.directory / "odd").mkdir(exist_ok=True)
    data = make_wheel(setup.directory / "odd", "odd-name-pkg", "1.0").read_bytes()
    fields = twine_fields("odd_name_pkg-1.0-py3-none-any.whl", data)
    content_type, body = multipart(fields, [("content", filename, data)])
    status, answer = post(gw, "mallory", content_type, body)
    assert 400 <= status < 500, answer
    assert filename not in setup.index.files()


# --------------------------------------------------------------------------------------------------------------
# Finding 4: limits.max_project_size is checked per upload against what is recorded: concurrent uploads pass it.
# --------------------------------------------------------------------------------------------------------------


def test_concurrent_uploads_exceed_the_project_size_limit(tmp_path: Path) -> None:
    """max_project_size = 3 MiB; the project has nothing yet. Two 2 MiB wheels of one project, sent at once (their
    last bytes together): each upload's `_check_file` adds its own size to `project_size()`, which only counts
    *recorded* files, so both see 2 MiB <= 3 MiB and both are stored: 4 MiB in a 3 MiB project. With N connections
    the limit is exceeded N times over.

    Should: reserve the size (like a claim) before the last byte goes, or check and record under one lock.
    """
    packages = tmp_path / "packages"
    gw = start_gateway(
        tmp_path / "gw", {"url": "embedded", "data_dir": str(packages)}, limits={"max_project_size": "3MiB"}
    )
    try:
        gw.add_user("quota", PASSWORD)
        (tmp_path / "seed").mkdir()
        assert twine(gw.url, "quota", PASSWORD, make_wheel(tmp_path / "seed", "quota-pkg", "0.1")).returncode == 0
        wheels = [make_wheel(tmp_path, "quota-pkg", f"1.{i}", payload_size=2 * 2**20) for i in range(2)]
        uploads = [SlowUpload(gw, "quota", wheel) for wheel in wheels]
        time.sleep(1)
        statuses: list[int] = []
        threads = [threading.Thread(target=lambda u=u: statuses.append(u.finish())) for u in uploads]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stored = sum((packages / wheel.name).stat().st_size for wheel in wheels if (packages / wheel.name).exists())
        assert stored <= 3 * 2**20, f"statuses {statuses}: {stored / 2**20:.1f} MiB stored in a 3 MiB project"
    finally:
        stop(gw.process)


# --------------------------------------------------------------------------------------------------------------
# Finding 5: the upload endpoint has no throttle on password guesses (the account pages do: 429 after 6).
# --------------------------------------------------------------------------------------------------------------


def test_password_guesses_on_the_upload_endpoint_are_not_throttled(setup: Setup) -> None:
    """README: "the sixth wrong password or code in a row, per account or per address, gets 429". That holds on
    /account/ only: POST /legacy/ verifies every Basic password it is sent (argon2, ~40 ms of CPU and 12 MiB each)
    and answers 403 forever, so the password of any account that may upload with it can be guessed there without
    limit, and a flood of guesses costs the gateway CPU. For an account with 2FA (whose password alone cannot
    upload) the answer still tells a right password from a wrong one ("no longer supported for accounts with
    two-factor authentication" vs "Invalid or non-existent authentication information"), so the lockout of the
    account pages is bypassed for guessing the first factor too.

    Should: the same Throttle (per account and per address) on the upload path's password check, answered 429.
    """
    gw = setup.gateway
    gw.add_user("gail", PASSWORD)  # her own: the lock that follows must not reach the other tests' users
    statuses = []
    for attempt in range(30):
        with connect(gw) as sock:
            sock.sendall(
                f"POST /legacy/ HTTP/1.1\r\nHost: g\r\nAuthorization: "
                f"Basic {base64.b64encode(f'gail:guess{attempt}'.encode()).decode()}\r\n"
                "Content-Type: multipart/form-data; boundary=x\r\n"
                "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            statuses.append(int(sock.makefile("rb").readline().split()[1]))
    # The right password, right after 30 wrong ones in a row from this address.
    content_type, body = multipart([(":action", "file_upload")])
    right, _ = post(gw, "gail", content_type, body)
    # With 2FA the password cannot upload, but the answer still says whether it was right.
    gw.add_user("tfa", PASSWORD)
    gw.cli("user", "2fa", "enable", "tfa")
    (setup.directory / "tfa").mkdir(exist_ok=True)
    wheel = make_wheel(setup.directory / "tfa", "tfa-probe", "1.0")
    data = wheel.read_bytes()
    content_type, body = multipart(twine_fields(wheel.name, data), [("content", wheel.name, data)])
    with connect(gw) as sock:
        wrong = request_head(gw, "tfa", content_type, len(body)).replace(basic("tfa").encode(), b"Basic dGZhOm5vcGU=")
        sock.sendall(wrong + body)
        wrong_answer = sock.makefile("rb").readline()
    _, right_answer = post(gw, "tfa", content_type, body)
    oracle = b"Invalid or non-existent authentication" in wrong_answer and (
        "accounts with two-factor authentication" in right_answer.splitlines()[0]
    )
    assert 429 in statuses or right == 429, (
        f"30 wrong passwords: statuses {sorted(set(statuses))}; then the right one was accepted (HTTP {right}: "
        f"past authentication, the form was read); a 2FA account's right password is told from a wrong one: {oracle}"
    )


# --------------------------------------------------------------------------------------------------------------
# Finding 6: PyPI's filename rules are keyed on the exact filename, but the gateway accepts case variants of it.
# --------------------------------------------------------------------------------------------------------------


def test_a_case_variant_reuses_a_deleted_filename_and_doubles_a_release_file(setup: Setup) -> None:
    """validation accepts a wheel's escaped name in any case ('Demo_Pkg-…'), while `existing` (duplicates, and the
    "previously used by a deleted file" rule) compares filenames exactly. So:

    - after the owner deleted cased-pkg 1.0 (remove_pkg), `cased_pkg-1.0-py3-none-any.whl` is refused for ever,
      as on PyPI, but `Cased_Pkg-1.0-py3-none-any.whl` with other bytes is accepted: the deleted name is back;
    - next to an existing `cased_pkg-2.0-py3-none-any.whl`, `CASED_PKG-2.0-py3-none-any.whl` with different bytes
      is stored (200) beside it: two files for the same release and tags, which installers treat as the same
      file (pip takes either). On a case-insensitive filesystem pypiserver's exact-name `exists` check passes and
      `open(…, "wb")` overwrites the original: a replaced file.

    Should: compare filenames case-insensitively (or canonicalized: name, version, tags) in `existing`, in the
    deleted-filename rule and in the store's `files` key; or accept only the normalized lower-case name.
    """
    gw, index = setup.gateway, setup.index
    (setup.directory / "c1").mkdir()
    (setup.directory / "c2").mkdir()
    first = make_wheel(setup.directory / "c1", "cased-pkg", "1.0")
    assert twine(gw.url, "olga", PASSWORD, first).returncode == 0
    content_type, body = multipart([(":action", "remove_pkg"), ("name", "cased_pkg"), ("version", "1.0")])
    assert post(gw, "olga", content_type, body)[0] == 200
    assert first.name not in index.files()
    other = make_wheel(setup.directory / "c2", "cased-pkg", "1.0", seed=b"other bytes")
    data = other.read_bytes()
    content_type, body = multipart(twine_fields(other.name, data), [("content", other.name, data)])
    assert post(gw, "olga", content_type, body)[0] == 400  # "previously used": as on PyPI
    variant = "Cased_Pkg-1.0-py3-none-any.whl"
    content_type, body = multipart(twine_fields(variant, data), [("content", variant, data)])
    reused, _ = post(gw, "olga", content_type, body)

    second = make_wheel(setup.directory / "c1", "cased-pkg", "2.0")
    assert twine(gw.url, "olga", PASSWORD, second).returncode == 0
    gw.cli("project", "grant", "cased-pkg", "mel", "--role", "maintainer")
    evil = make_wheel(setup.directory / "c2", "cased-pkg", "2.0", seed=b"mel's bytes").read_bytes()
    twin = "CASED_PKG-2.0-py3-none-any.whl"
    content_type, body = multipart(twine_fields(twin, evil), [("content", twin, evil)])
    doubled, _ = post(gw, "mel", content_type, body)
    on_index = [name for name in index.files() if name.lower().startswith("cased_pkg-")]
    assert reused != 200 and doubled != 200, (
        f"deleted filename re-used in another case: HTTP {reused}; a second, different file for release 2.0's "
        f"py3-none-any wheel: HTTP {doubled}; the index now has {on_index}"
    )


# --------------------------------------------------------------------------------------------------------------
# Finding 7 (devpi): the index files an upload under the form's version as the client wrote it, not as validated.
# --------------------------------------------------------------------------------------------------------------


def test_devpi_files_the_upload_under_the_raw_form_version(
    tmp_path_factory: pytest.TempPathFactory, devpi: object
) -> None:
    """validate_upload checks Version(form) == Version(filename) and keeps str(Version) in Upload.version, but
    `forwarded()` sends the client's raw `version` value. devpi files a release under the form's version (with
    only a substring check against the filename), so `mallory_pkg-1.0.0-py3-none-any.whl` sent with version "1"
    is stored under devpi version "1", `…-2.0.0-…` under "2.0" etc.: versions the gateway never validated as such
    appear in devpi's version list, metadata and "latest" (which devpi uses e.g. for doc uploads without a
    version).

    Should: forward the normalized, validated version (str(Version), the one in the filename), not the raw value.
    """
    from tests.conftest import devpi_upstream
    from tests.harness.devpi import Devpi

    assert isinstance(devpi, Devpi)
    directory = tmp_path_factory.mktemp("review-devpi")
    gw = start_gateway(directory / "gw", devpi_upstream(devpi, directory))
    try:
        gw.add_user("dora", PASSWORD)
        wheel = make_wheel(directory, "raw-version-pkg", "1.0.0")
        data = wheel.read_bytes()
        content_type, body = multipart(twine_fields(wheel.name, data, version="1"), [("content", wheel.name, data)])
        status, answer = post(gw, "dora", content_type, body)
        assert status == 400 and "Version in filename should be '1' not '1.0.0'." in answer, answer
        assert devpi.files("raw-version-pkg") == {}, "nothing was filed under a version the filename does not say"
    finally:
        stop(gw.process)


# --------------------------------------------------------------------------------------------------------------
# Finding 8: a hundred stalled uploads of one user stop every install through the gateway.
# --------------------------------------------------------------------------------------------------------------


def test_stalled_uploads_of_one_user_starve_every_install(tmp_path: Path) -> None:
    """Each upload that reached the file opens its own request to the index and holds it while the client
    dribbles (a byte every < read_timeout keeps it alive; upstream.timeout only starts after the body). Those
    connections are shared with the GET passthrough: the embedded waitress stops accepting at its connection_limit
    of 100 (its log says so here), and the gateway's ClientSession pool is aiohttp's default of 100 too; nothing
    bounds uploads per user or in all. So one user (any user, under new_projects=claim: new names need no
    role) with 100 open uploads makes every `pip install` through the gateway hang. Against a pypiserver under a
    sync server (gunicorn) one slow upload already blocks a worker.

    Should: a per-user (and global) cap on uploads in flight, answered 429; a connection pool for uploads separate
    from the one for reads; or spool slow bodies before opening the index request.
    """
    # The cap on connections per address (64) is lifted: an attacker with a few addresses gets around it, and what
    # is tested here is the cap on uploads in flight.
    gw = start_gateway(
        tmp_path / "gw",
        {"url": "embedded", "data_dir": str(tmp_path / "packages")},
        limits={"max_connections_per_address": "0"},
    )
    socks: list[socket.socket] = []
    try:
        gw.add_user("hog", PASSWORD)
        for i in range(100):
            wheel = make_wheel(tmp_path, f"hog-pkg-{i}", "1.0", payload_size=200_000)
            data = wheel.read_bytes()
            content_type, body = multipart(twine_fields(wheel.name, data), [("content", wheel.name, data)])
            sock = connect(gw, timeout=60)
            sock.sendall(request_head(gw, "hog", content_type, len(body)) + body[:-1000])
            socks.append(sock)
        time.sleep(2)
        started = time.monotonic()
        try:
            with urllib.request.urlopen(gw.url + "/simple/", timeout=10) as resp:
                status = resp.status
        except TimeoutError:
            status = 0
        assert status == 200, f"GET /simple/ hung for {time.monotonic() - started:.0f} s behind 100 stalled uploads"
    finally:
        for sock in socks:
            sock.close()
        stop(gw.process)
