"""Which wheel platform tags an upload may carry: the ones PyPI accepts (`policy.platform_tags = "pypi"`), or any
(`"any"`, for private builds such as linux_x86_64). Pure."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Literal

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from gateway.errors import GatewayError

PlatformPolicy = Literal["pypi", "any"]

# Platform tags PyPI accepts: a fixed list, then families whose versions or architectures vary.
_PYPI_PLATFORMS = frozenset(
    {
        "any",
        "win32",
        "win_arm64",
        "win_amd64",
        "win_ia64",
        "manylinux1_x86_64",
        "manylinux1_i686",
        "manylinux2010_x86_64",
        "manylinux2010_i686",
        "manylinux2014_x86_64",
        "manylinux2014_i686",
        "manylinux2014_aarch64",
        "manylinux2014_armv7l",
        "manylinux2014_ppc64",
        "manylinux2014_ppc64le",
        "manylinux2014_s390x",
        "linux_armv6l",
        "linux_armv7l",
    }
)
_MACOS_ARCHES = frozenset(
    {"ppc", "ppc64", "i386", "x86_64", "arm64", "intel", "fat", "fat3", "fat64", "universal", "universal2"}
)
# macOS 10.x counts minor versions; from 11 on only `{major}_0` is a tag, for the majors released so far.
_MACOS_MAJORS = frozenset({"11", "12", "13", "14", "15", "26"})
_LINUX_ARCHES = frozenset({"x86_64", "i686", "aarch64", "armv7l", "ppc64le", "s390x", "riscv64"})
_GLIBC_ARCHES = _LINUX_ARCHES | {"ppc64"}
_IOS_ARCHES = frozenset({"arm64", "x86_64"})
_ANDROID_ARCHES = frozenset({"armeabi_v7a", "arm64_v8a", "x86", "x86_64"})
_PLATFORM_FAMILIES: Sequence[tuple[re.Pattern[str], Callable[[re.Match[str]], bool]]] = (
    (
        re.compile(r"macosx_(\d+)_(\d+)_(.+)"),
        lambda m: m[3] in _MACOS_ARCHES and (m[1] == "10" or (m[1] in _MACOS_MAJORS and m[2] == "0")),
    ),
    (re.compile(r"manylinux_\d+_\d+_(.+)"), lambda m: m[1] in _GLIBC_ARCHES),
    (re.compile(r"musllinux_\d+_\d+_(.+)"), lambda m: m[1] in _LINUX_ARCHES),
    (re.compile(r"ios_\d+_\d+_(.+)_(?:iphoneos|iphonesimulator)"), lambda m: m[1] in _IOS_ARCHES),
    (re.compile(r"android_\d+_(.+)"), lambda m: m[1] in _ANDROID_ARCHES),
    (re.compile(r"pyemscripten_\d+_\d+_wasm32"), lambda m: True),
)


def check_platform_tags(filename: str, policy: PlatformPolicy = "pypi") -> None:
    """Under "pypi", each platform tag of the wheel `filename` must be one PyPI accepts; "any" accepts all."""
    if policy == "any":
        return
    try:
        parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise GatewayError(400, str(exc), "invalid_filename") from exc
    for platform in filename[: -len(".whl")].rpartition("-")[2].lower().split("."):
        if not is_pypi_platform(platform):
            message = f"Binary wheel '{filename}' has an unsupported platform tag '{platform}'."
            raise GatewayError(400, message, "unsupported_platform")


def is_pypi_platform(platform: str) -> bool:
    """Whether PyPI accepts a wheel built for `platform` (one tag, e.g. manylinux_2_17_x86_64)."""
    if platform in _PYPI_PLATFORMS:
        return True
    for pattern, accepts in _PLATFORM_FAMILIES:
        match = pattern.fullmatch(platform)
        if match:
            return accepts(match)
    return False
