"""Every filename the gateway accepts means the same project and version to packaging, pypiserver and devpi.

The gateway checks rights on the project that `packaging` reads from the filename, but each index reads the
filename with its own parser. Where they disagree, a user allowed to upload to one project can put a file
into another: `myproj-v2-1-py3-none-any.whl` is project `myproj` version `v2` (build tag 1) to packaging,
and project `myproj-v2` version 1 to pypiserver, which files uploads by filename.

The parsers compared:
- pypiserver (`pypiserver.pkg_helpers.guess_pkgname_and_version`) files and lists uploads by filename. Its
  wheel pattern is `(?P<name>.+?)-(?P<ver>\\d.*?)(-(?P<build>\\d.*?))?-pyver-abi-plat.whl`: the name runs to
  the first '-' followed by a digit. Of a wheel with a build tag it reports the version `ver-build`, so the
  test takes the version and the build tag from that same pattern.
- devpi (`devpi_server.views.PyPIView.submit`) files an upload under the form's normalized `name` and its
  `version` string, and reads the filename with `devpi_common.metadata.splitbasename` where it sorts links
  and looks up `+f/` paths. The test checks both.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from devpi_common.metadata import splitbasename
from devpi_server.normalized import normalize_name as devpi_normalize
from hypothesis import example, given, settings
from hypothesis import strategies as st
from packaging.utils import (
    BuildTag,
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from gateway.errors import GatewayError
from gateway.validation import Upload, validate_upload
from tests.harness.forms import twine_fields


def _pypiserver_pkg_helpers() -> ModuleType:
    """pypiserver's filename parser, loaded alone: importing the pypiserver package starts its bundled
    bottle, whose import hooks and `cgi` import warn (an error under this suite's filterwarnings)."""
    package = importlib.util.find_spec("pypiserver")
    assert package is not None and package.submodule_search_locations
    path = Path(next(iter(package.submodule_search_locations))) / "pkg_helpers.py"
    spec = importlib.util.spec_from_file_location("pypiserver_pkg_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PKG_HELPERS = _pypiserver_pkg_helpers()
guess_pkgname_and_version = PKG_HELPERS.guess_pkgname_and_version
normalize_pkgname = PKG_HELPERS.normalize_pkgname
wheel_file_re = PKG_HELPERS.wheel_file_re
OCTET = "application/octet-stream"
DATA = b"not a real distribution: validation never reads the bytes"


@dataclass(frozen=True)
class Reading:
    """What one parser makes of a filename: project and version as written, a wheel's build tag as written."""

    name: str
    version: str
    build: str = ""


def packaging_reads(filename: str) -> tuple[str, Version, BuildTag] | None:
    """(normalized project, version, build tag) per packaging, or None if it is no valid name."""
    try:
        if filename.endswith(".whl"):
            name, version, build, _ = parse_wheel_filename(filename)
            return name, version, build
        name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return name, version, ()


def build_tag(text: str) -> BuildTag:
    """A build tag as written, in packaging's form: (leading number, rest), or () for none."""
    match = re.fullmatch(r"(\d+)(.*)", text)
    return (int(match.group(1)), match.group(2)) if match else ()


def pypiserver_reads(filename: str) -> Reading | None:
    guessed = guess_pkgname_and_version(filename)
    if guessed is None:
        return None
    name, version = guessed
    if not filename.endswith(".whl"):
        return Reading(name, version)
    match = wheel_file_re.match(filename)
    assert match is not None  # guess_pkgname_and_version read it with this pattern
    build = match.group("build") or ""
    assert version == (f"{match.group('ver')}-{build}" if build else match.group("ver"))
    return Reading(name, match.group("ver"), build)


def devpi_reads(filename: str) -> Reading | None:
    try:
        name, version, _ = splitbasename(filename)
    except ValueError:
        return None
    return Reading(name, version)


def same_version(text: str, expected: Version) -> bool:
    try:
        return Version(text) == expected
    except InvalidVersion:
        return False


def form(filename: str, fallback: tuple[str, str]) -> dict[str, list[str]]:
    """twine's fields for the file, with the name and version packaging reads from it: the only form with
    which the gateway accepts it. A filename packaging cannot read gets the name and version it was made from.
    """
    if packaging_reads(filename) is not None:
        fields = twine_fields(filename, DATA)
    else:
        wheel = filename.endswith(".whl")
        placeholder = "x-1-py3-none-any.whl" if wheel else "x-1.tar.gz"
        fields = twine_fields(placeholder, DATA, name=fallback[0], version=fallback[1])
    grouped: dict[str, list[str]] = {}
    for key, value in fields:
        grouped.setdefault(key, []).append(value)
    return grouped


def accepted(filename: str, fallback: tuple[str, str] = ("demo", "1.0")) -> tuple[Upload, Mapping[str, Sequence[str]]]:
    fields = form(filename, fallback)
    return validate_upload(fields, filename=filename, content_type=OCTET), fields


def check_agreement(filename: str, fallback: tuple[str, str] = ("demo", "1.0")) -> Upload | GatewayError:
    """Validate; if the gateway accepts the file, every index must file it where packaging says."""
    try:
        upload, fields = accepted(filename, fallback)
    except GatewayError as exc:
        return exc
    read = packaging_reads(filename)
    assert read is not None, f"accepted {filename!r}, which packaging cannot read"
    project, version, build = read
    assert upload.project == project, filename
    for index, reading, normalize in (
        ("pypiserver", pypiserver_reads(filename), normalize_pkgname),
        ("devpi", devpi_reads(filename), devpi_normalize),
    ):
        assert reading is not None, f"{index} cannot read {filename!r}"
        assert canonicalize_name(reading.name) == project, f"{index} files {filename!r} under {reading.name!r}"
        assert normalize(reading.name) == project, f"{index} normalizes {reading.name!r} differently"
        assert same_version(reading.version, version), f"{index} reads version {reading.version!r} in {filename!r}"
    pypiserver = pypiserver_reads(filename)
    assert pypiserver is not None and build_tag(pypiserver.build) == build, filename
    # devpi files uploads by the form: its normalized name and the version string the gateway let through.
    (name,), (form_version,) = fields["name"], fields["version"]
    assert devpi_normalize(name) == project and Version(form_version) == version
    return upload


# Hand-picked names: (filename, None if accepted, else the refusal's reason code).
TABLE = [
    # the attack and its relatives: a version part that does not start with a digit
    ("myproj-v2-1-py3-none-any.whl", "ambiguous_filename"),
    ("myproj-V2-py3-none-any.whl", "ambiguous_filename"),
    ("myproj-v2.0-py3-none-any.whl", "ambiguous_filename"),
    ("myproj- 2-1-py3-none-any.whl", "ambiguous_filename"),
    ("myproj-v1!2-3-py3-none-any.whl", "ambiguous_filename"),
    # what build tools write
    ("myproj-2-1-py3-none-any.whl", None),
    ("myproj_v2-1-py3-none-any.whl", None),
    ("Demo_Pkg-0.1.0-py3-none-any.whl", None),
    ("demo_pkg-0.1.0-py2.py3-none-any.whl", None),
    ("demo_pkg-1!2.0-py3-none-any.whl", None),
    ("demo_pkg-1.0a1.post2.dev3-py3-none-any.whl", None),
    ("demo_pkg-2.0rc1-1abc-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", None),
    ("demo_pkg-1.0.post1-cp39-abi3-win_amd64.whl", None),
    ("a1_2b-3.4-5-py3-none-any.whl", None),
    ("demo_pkg-1.0-x1-py3-none-any.whl", "invalid_filename"),
    ("demo_pkg-1.0+local-py3-none-any.whl", "local_version"),
    ("demo-pkg-1.0-py3-none-any.whl", "invalid_filename"),
    ("demo.pkg-1.0-py3-none-any.whl", "unnormalized_filename"),
    # sdists: exactly {normalized_name}-{normalized_version}.tar.gz (PEP 625)
    ("demo_pkg-1.0.tar.gz", None),
    ("demo_pkg-1!1.0.post1.dev2.tar.gz", None),
    ("myproj_v2-1.tar.gz", None),
    ("myproj-v2-1.tar.gz", "unnormalized_filename"),
    ("demo_pkg-v1.0.tar.gz", "unnormalized_filename"),
    ("Demo_Pkg-1.0.tar.gz", "unnormalized_filename"),
    ("demo_pkg-1.0-1.tar.gz", "unnormalized_filename"),
    ("demo_pkg-1.0.zip", "invalid_extension"),
    ("demo_pkg-1.0.tgz", "invalid_extension"),
]


@pytest.mark.parametrize(("filename", "refusal"), TABLE)
def test_hand_picked_names(filename: str, refusal: str | None) -> None:
    outcome = check_agreement(filename)
    if refusal is None:
        assert isinstance(outcome, Upload), outcome
    else:
        assert isinstance(outcome, GatewayError) and outcome.reason == refusal, outcome
        assert outcome.status == 400


# Names as people and tools write them: letters (any case), digits, separators, segments that look like
# versions or tags.
SEGMENT = st.sampled_from(["a", "Demo", "pkg", "v2", "V", "1", "22", "py3", "x", "rc1", "post"]) | st.from_regex(
    r"[A-Za-z0-9]{1,4}", fullmatch=True
)
NAME = st.builds(
    lambda first, rest: first + "".join(sep + segment for sep, segment in rest),
    SEGMENT,
    st.lists(st.tuples(st.sampled_from(["-", "_", ".", "--", "_-"]), SEGMENT), max_size=3),
)
RELEASE = st.lists(st.integers(0, 12).map(str) | st.sampled_from(["01", "2024"]), min_size=1, max_size=4).map(".".join)
VERSION = st.builds(
    lambda prefix, epoch, release, pre, post, dev, local, suffix: (
        f"{prefix}{epoch}{release}{pre}{post}{dev}{local}{suffix}"
    ),
    st.sampled_from(["", "", "", "v", "V", " "]),
    st.sampled_from(["", "", "1!", "0!", "12!"]),
    RELEASE,
    st.sampled_from(["", "a1", "b2", "rc3", "c1", "alpha4", "-rc1", "_beta2", ".pre1", "RC1", "preview"]),
    st.sampled_from(["", ".post1", "-1", "post2", "_post3", ".POST", "-post-4", "rev5", "r6"]),
    st.sampled_from(["", ".dev1", "dev", "-dev2", "_dev3"]),
    st.sampled_from(["", "", "+local", "+abc.1", "+Ubuntu-1"]),
    st.sampled_from(["", "", "", " ", "-", "x"]),
)
BUILD = st.sampled_from(["", "", "1", "2abc", "0_x", "01", "v1", "a"])
TAGS = st.sampled_from(
    [
        "py3-none-any",
        "py2.py3-none-any",
        "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64",
        "cp39-abi3-win_amd64",
        "pp310-pypy310_pp73-macosx_11_0_arm64",
        "py3-none",
        "1-none-any",
        "py3-none-linux-x86_64",
    ]
)
SDIST_SUFFIX = st.sampled_from([".tar.gz", ".tar.gz", ".zip", ".tgz", ".tar.bz2", ".TAR.GZ", ".tar.gz.asc", ""])


def escape(name: str, style: str) -> str:
    """The name as a filename writes it: normalized (PEP 427/625), as given, or half-escaped."""
    normalized = canonicalize_name(name)
    return {
        "normalized": normalized.replace("-", "_"),
        "cased": "_".join(part.capitalize() for part in normalized.split("-")),
        "given": name,
        "dashed": normalized,
    }[style]


STYLE = st.sampled_from(["normalized", "normalized", "cased", "given", "dashed"])


@st.composite
def wheel_names(draw: st.DrawFn) -> tuple[str, tuple[str, str]]:
    name, version, build = draw(NAME), draw(VERSION), draw(BUILD)
    parts = [escape(name, draw(STYLE)), version, *([build] if build else []), draw(TAGS)]
    return "-".join(parts) + ".whl", (name, version)


@st.composite
def sdist_names(draw: st.DrawFn) -> tuple[str, tuple[str, str]]:
    name, version = draw(NAME), draw(VERSION)
    if draw(st.booleans()):
        with_version = str(Version(version)) if _valid(version) else version
        version = with_version
    return f"{escape(name, draw(STYLE))}-{version}{draw(SDIST_SUFFIX)}", (name, version)


def _valid(version: str) -> bool:
    try:
        Version(version)
    except InvalidVersion:
        return False
    return True


@settings(max_examples=2000, deadline=None, database=None)
@given(case=wheel_names() | sdist_names())
@example(case=("myproj-v2-1-py3-none-any.whl", ("myproj", "2")))
def test_accepted_filenames_mean_the_same_everywhere(case: tuple[str, tuple[str, str]]) -> None:
    filename, fallback = case
    check_agreement(filename, fallback)
