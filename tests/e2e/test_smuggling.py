"""Ways around the checks, tried as an attacker would: a user who owns only `mallory-pkg` aims at projects another
user owns. Each request must be refused, or store only what the gateway validated; afterwards the other user's
projects on the index are byte for byte as before (nothing planted, nothing deleted), and every request the index
received complete is a canonical upload of mallory's own project. Against pypiserver and against devpi, which read
multipart bodies (and file uploads) each in their own way.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import re
import socket
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.utils import canonicalize_name, parse_wheel_filename

from gateway.upload.encoding import FORWARDED_FIELDS
from tests.conftest import GatewayProcess, Index, Relay, devpi_upstream, index_upstream, start_gateway, stop, twine
from tests.dists import make_wheel
from tests.harness.devpi import Devpi
from tests.harness.forms import read_multipart, twine_fields

PASSWORD = "smuggling test password"
B = b"attackerboundary"
VICTIM_PROJECTS = ("victim-pkg", "mallory-pkg-v2")


@dataclass
class Scene:
    gateway: GatewayProcess
    relay: Relay
    listing: Callable[[], dict[str, dict[str, str]]]  # {project: {filename: sha256}} as the index files them
    victim_files: dict[str, dict[str, str]]
    wheel: bytes  # a valid wheel of mallory's, to carry in requests
    evil: bytes  # bytes that must never be stored under a victim project
    setup_requests: int  # requests the index received while the scene was set up

    def post(
        self, body: bytes, *, content_type: str = f"multipart/form-data; boundary={B.decode()}", **headers: str
    ) -> int:
        lines = [
            "POST /legacy/ HTTP/1.1",
            "Host: gateway",
            "Authorization: Basic " + base64.b64encode(f"mallory:{PASSWORD}".encode()).decode(),
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
        ]
        parts = urlsplit(self.gateway.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
            try:
                sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            except OSError:
                pass  # refused before the body was read, and the connection closed
            status_line = sock.makefile("rb").readline()
        return int(status_line.split()[1])


def pypiserver_listing(index: Index) -> dict[str, dict[str, str]]:
    """{project: {filename: sha256}} as pypiserver itself files them (its simple pages, its directory)."""
    listing: dict[str, dict[str, str]] = {}
    with urllib.request.urlopen(f"{index.url}simple/") as resp:
        projects = re.findall(r'href="([^"/]+)/?"', resp.read().decode())
    for project in projects:
        with urllib.request.urlopen(f"{index.url}simple/{project}/") as resp:
            page = resp.read().decode()
        names = [href.rsplit("/", 1)[-1].split("#")[0] for href in re.findall(r'href="([^"]+)"', page)]
        listing[project] = {name: hashlib.sha256((index.packages / name).read_bytes()).hexdigest() for name in names}
    return listing


def victims(listing: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {project: listing.get(project, {}) for project in VICTIM_PROJECTS}


@pytest.fixture(scope="module", params=["pypiserver", "devpi"])
def scene(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    directory = tmp_path_factory.mktemp("smuggling")
    listing: Callable[[], dict[str, dict[str, str]]]
    if request.param == "devpi":
        server: Devpi = request.getfixturevalue("devpi")
        relay = Relay(int(urlsplit(server.url).port or 0))
        upstream = devpi_upstream(server, directory)
        for key in ("url", "upload_url", "simple_url"):
            upstream[key] = str(upstream[key]).replace(server.url, relay.url)
        listing = server.snapshot
    else:
        index: Index = request.getfixturevalue("index")
        relay = Relay(int(urlsplit(index.url).port or 0))
        upstream = index_upstream(index, directory) | {"url": relay.url}
        listing = functools.partial(pypiserver_listing, index)
    gw = start_gateway(directory / "gw", upstream, policy={"allowed_actions": ["file_upload", "remove_pkg"]})
    gw.add_user("vera", PASSWORD)
    gw.add_user("mallory", PASSWORD)
    for project, version in (("victim-pkg", "1.0"), ("mallory-pkg-v2", "1")):
        result = twine(gw.url, "vera", PASSWORD, make_wheel(directory, project, version))
        assert result.returncode == 0, result.stdout
    assert twine(gw.url, "mallory", PASSWORD, make_wheel(directory, "mallory-pkg", "1.0")).returncode == 0
    (directory / "carried").mkdir()
    (directory / "evil").mkdir()
    wheel = make_wheel(directory / "carried", "mallory-pkg", "0.1").read_bytes()
    evil = make_wheel(directory / "evil", "victim-pkg", "6.6").read_bytes()
    yield Scene(gw, relay, listing, victims(listing()), wheel, evil, len(relay.requests()))
    stop(gw.process)
    relay.close()


def field(name: str, value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + data


def file_part(filename: str, data: bytes, *, extra: bytes = b"") -> bytes:
    return (
        f'Content-Disposition: form-data; name="content"; filename="{filename}"\r\n'.encode()
        + extra
        + b"Content-Type: application/octet-stream\r\n\r\n"
        + data
    )


def assemble(parts: list[bytes], *, after: bytes = b"") -> bytes:
    return b"".join(b"--" + B + b"\r\n" + part + b"\r\n" for part in parts) + b"--" + B + b"--\r\n" + after


def mallory_fields(version: str, data: bytes, **overrides: str | None) -> list[bytes]:
    filename = f"mallory_pkg-{version}-py3-none-any.whl"
    return [field(key, value) for key, value in twine_fields(filename, data, **overrides)]


def upload(version: str, data: bytes, *, filename: str | None = None, **overrides: str | None) -> list[bytes]:
    name = filename or f"mallory_pkg-{version}-py3-none-any.whl"
    return [*mallory_fields(version, data, **overrides), file_part(name, data)]


def evil_disposition(scene: Scene) -> bytes:
    return b'Content-Disposition: form-data; name="content"; filename="victim_pkg-6.6-py3-none-any.whl"'


def _fields_after_the_file(s: Scene) -> bytes:
    return assemble(
        [*upload("2.0", s.wheel), field(":action", "remove_pkg"), field("name", "victim-pkg"), field("version", "1.0")]
    )


def _two_dispositions(s: Scene) -> bytes:
    victim_first = evil_disposition(s) + b"\r\n" + file_part("mallory_pkg-2.1-py3-none-any.whl", s.evil)
    return assemble([*mallory_fields("2.1", s.evil), victim_first])


def _case_variant_dispositions(s: Scene) -> bytes:
    lower = evil_disposition(s).replace(b"Content-Disposition", b"content-disposition")
    return assemble(
        [*mallory_fields("2.2", s.evil), lower + b"\r\n" + file_part("mallory_pkg-2.2-py3-none-any.whl", s.evil)]
    )


def _bare_lf_delimiter(s: Scene) -> bytes:
    hidden = s.wheel + b"\n--" + B + b"\r\n" + evil_disposition(s) + b"\r\n\r\n" + s.evil
    return assemble([*mallory_fields("2.3", hidden), file_part("mallory_pkg-2.3-py3-none-any.whl", hidden)])


def _bare_lf_everywhere(s: Scene) -> bytes:
    return assemble(upload("2.4", s.wheel)).replace(b"\r\n", b"\n")


def _data_after_the_close(s: Scene) -> bytes:
    return assemble(upload("2.5", s.wheel), after=b"--" + B + b"\r\n" + evil_disposition(s) + b"\r\n\r\n" + s.evil)


def _preamble_with_a_part(s: Scene) -> bytes:
    preamble = b"\n--" + B + b"\r\n" + evil_disposition(s) + b"\r\n\r\n" + s.evil + b"\r\n"
    return preamble + assemble(upload("2.6", s.wheel))


def _wheel_name_confusion(s: Scene) -> bytes:
    filename = "mallory_pkg-v2-1-py3-none-any.whl"
    fields = [field(k, v) for k, v in twine_fields(filename, s.evil)]
    return assemble([*fields, file_part(filename, s.evil)])


def _extended_filename(s: Scene) -> bytes:
    extra = b"; filename*=UTF-8''victim_pkg-6.6-py3-none-any.whl"
    part = file_part("mallory_pkg-2.7-py3-none-any.whl", s.evil).replace(b'whl"\r\n', b'whl"' + extra + b"\r\n", 1)
    return assemble([*mallory_fields("2.7", s.evil), part])


def _escaped_quote(s: Scene) -> bytes:
    part = (
        b'Content-Disposition: form-data; name="content"; filename="mallory_pkg-2.8-py3-none-any.whl\\"; '
        b'filename=\\"victim_pkg-6.6-py3-none-any.whl"\r\n\r\n' + s.evil
    )
    return assemble([*mallory_fields("2.8", s.evil), part])


def _transfer_encoding(s: Scene) -> bytes:
    encoded = base64.b64encode(s.evil)
    part = file_part("mallory_pkg-2.9-py3-none-any.whl", encoded, extra=b"Content-Transfer-Encoding: base64\r\n")
    return assemble([*mallory_fields("2.9", encoded), part])


def _folded_disposition(s: Scene) -> bytes:
    part = (
        b'Content-Disposition: form-data; name="content";\r\n filename="victim_pkg-6.6-py3-none-any.whl"\r\n\r\n'
        + s.evil
    )
    return assemble([*mallory_fields("3.0", s.evil), part])


def _second_file(s: Scene) -> bytes:
    return assemble([*upload("3.1", s.wheel), file_part("victim_pkg-6.6-py3-none-any.whl", s.evil)])


def _victim_name_after_the_file(s: Scene) -> bytes:
    return assemble([*upload("3.2", s.wheel), field("name", "victim-pkg")])


def _file_first_then_victim_fields(s: Scene) -> bytes:
    filename = "victim_pkg-6.6-py3-none-any.whl"
    fields = [field(k, v) for k, v in twine_fields(filename, s.evil)]
    return assemble([file_part(filename, s.evil), *fields])


ATTACKS: dict[str, Callable[[Scene], bytes]] = {
    "fields after the file (remove_pkg of another project)": _fields_after_the_file,
    "two Content-Disposition headers": _two_dispositions,
    "two Content-Disposition headers in other cases": _case_variant_dispositions,
    "bare-LF delimiter hiding a part": _bare_lf_delimiter,
    "bare LF everywhere": _bare_lf_everywhere,
    "a part after the closing delimiter": _data_after_the_close,
    "a preamble hiding a part": _preamble_with_a_part,
    "wheel name read differently by pypiserver": _wheel_name_confusion,
    "filename* beside filename": _extended_filename,
    "an escaped quote in the filename": _escaped_quote,
    "Content-Transfer-Encoding: base64": _transfer_encoding,
    "a folded Content-Disposition": _folded_disposition,
    "a second file part": _second_file,
    "another project's name after the file": _victim_name_after_the_file,
    "file first, then another project's fields": _file_first_then_victim_fields,
}


def assert_nothing_reached_the_victims(scene: Scene) -> None:
    listing = scene.listing()
    assert victims(listing) == scene.victim_files, "another user's project changed"
    planted = [name for files in listing.values() for name in files if name.startswith("victim_pkg-6.6")]
    assert planted == [], "the attacker's file for another project is on the index"
    for project, files in listing.items():
        if project not in VICTIM_PROJECTS and project != "mallory-pkg":
            assert not any(name.startswith(("mallory_pkg", "victim_pkg")) for name in files), (project, files)
    for request in scene.relay.requests()[scene.setup_requests :]:
        if request.method != "POST":
            continue
        parts = read_multipart(request.headers["content-type"], request.body)
        assert {part.name for part in parts} <= {*FORWARDED_FIELDS, "content"}
        files = [part for part in parts if part.filename is not None]
        assert len(files) == 1 and files[0].name == "content"
        assert files[0].filename is not None
        assert parse_wheel_filename(files[0].filename)[0] == canonicalize_name("mallory-pkg")
        assert [part.data for part in parts if part.name == ":action"] == [b"file_upload"]


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack_is_refused_and_changes_no_other_project(scene: Scene, attack: str) -> None:
    status = scene.post(ATTACKS[attack](scene))
    assert 400 <= status < 500, f"{attack}: {status}"
    assert_nothing_reached_the_victims(scene)


def test_a_gzip_body_is_refused_before_it_is_read(scene: Scene) -> None:
    body = gzip.compress(assemble(upload("3.3", scene.wheel)))
    assert scene.post(body, Content_Encoding="gzip") == 415
    assert_nothing_reached_the_victims(scene)


MUTATIONS = st.sampled_from(
    [
        "victim field before",
        "victim field after",
        "victim file after",
        "duplicate disposition",
        "lf for a crlf",
        "cr alone",
        "trailing part",
        "preamble",
        "confusing filename",
        "extra part header",
        "unquoted filename",
        "boundary in a value",
    ]
)
CONFUSING = ["mallory_pkg-v2-1-py3-none-any.whl", "mallory_pkg-2-v2-py3-none-any.whl", "victim_pkg-7.0.tar.gz"]


def mutate(scene: Scene, mutations: list[str], position: int) -> bytes:
    fields = mallory_fields("4.0", scene.wheel)
    parts = [*fields, file_part("mallory_pkg-4.0-py3-none-any.whl", scene.wheel)]
    after, before = b"", b""
    for mutation in mutations:
        where = position % (len(parts) + 1)
        if mutation == "victim field before":
            parts.insert(min(where, len(parts) - 1), field("name", "victim-pkg"))
        elif mutation == "victim field after":
            parts.append(field(":action", "remove_pkg"))
        elif mutation == "victim file after":
            parts.append(file_part("victim_pkg-6.6-py3-none-any.whl", scene.evil))
        elif mutation == "duplicate disposition":
            parts[-1] = evil_disposition(scene) + b"\r\n" + parts[-1]
        elif mutation == "trailing part":
            after = b"--" + B + b"\r\n" + evil_disposition(scene) + b"\r\n\r\n" + scene.evil + b"\r\n--" + B + b"--\r\n"
        elif mutation == "preamble":
            before = b"--" + B + b"x\r\n" + evil_disposition(scene) + b"\r\n\r\n" + scene.evil + b"\r\n"
        elif mutation == "confusing filename":
            name = CONFUSING[position % len(CONFUSING)]
            spots = [i for i, part in enumerate(parts) if b'name="content"; filename="mallory_pkg-4.0' in part]
            for at in spots:
                parts[at] = file_part(name, scene.evil)
        elif mutation == "extra part header":
            parts[where % len(parts)] = b"Content-Transfer-Encoding: 8bit\r\n" + parts[where % len(parts)]
        elif mutation == "unquoted filename":
            parts[-1] = parts[-1].replace(b'filename="', b"filename=").replace(b'.whl"', b".whl", 1)
        elif mutation == "boundary in a value":
            parts.insert(0, field("summary", b"x\n--" + B + b"\r\n" + evil_disposition(scene)))
    raw = before + assemble(parts, after=after)
    for mutation in mutations:
        if mutation == "lf for a crlf":
            spots = [m.start() for m in re.finditer(b"\r\n", raw)]
            spot = spots[position % len(spots)]
            raw = raw[:spot] + raw[spot + 1 :]
        elif mutation == "cr alone":
            spots = [m.start() for m in re.finditer(b"\r\n", raw)]
            spot = spots[(position * 7) % len(spots)]
            raw = raw[: spot + 1] + raw[spot + 2 :]
    return raw


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(MUTATIONS, min_size=1, max_size=4), st.integers(0, 1000))
def test_generated_hostile_layouts_change_no_other_project(scene: Scene, mutations: list[str], position: int) -> None:
    status = scene.post(mutate(scene, mutations, position))
    assert status == 200 or 400 <= status < 500, (mutations, status)
    assert_nothing_reached_the_victims(scene)
