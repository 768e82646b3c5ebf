from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from gateway.description import check_description
from gateway.dist_metadata import check_core_metadata, check_form_metadata
from gateway.errors import GatewayError
from gateway.platform_tags import check_platform_tags, is_pypi_platform
from tests.reasons import METADATA_REASONS as REASONS

CORE = "See https://packaging.python.org/specifications/core-metadata for more information."
LOCAL = (
    "See https://packaging.python.org/en/latest/specifications/version-specifiers/#local-version-identifiers"
    " for more information."
)
HELP = "See https://pypi.org/help/#description-content-type for more information."
Fields = Mapping[str, Sequence[str]]
# What twine sends for a wheel (the metadata part of it, and the rest, which these checks ignore).
FORM: Fields = {
    ":action": ["file_upload"],
    "protocol_version": ["1"],
    "metadata_version": ["2.4"],
    "name": ["demo-pkg"],
    "version": ["1.0"],
    "filetype": ["bdist_wheel"],
    "pyversion": ["py3"],
    "sha256_digest": ["a" * 64],
    "summary": ["A demo"],
}


def form(**changes: Sequence[str] | None) -> dict[str, Sequence[str]]:
    """Twine's form with `changes` (None drops a field)."""
    fields = {**FORM, **{key: value for key, value in changes.items() if value is not None}}
    return {key: value for key, value in fields.items() if changes.get(key, ()) is not None}


ACCEPTED = [
    pytest.param(form(), id="twine"),
    pytest.param(
        form(
            description=["Demo\n====\n\nA *demo*.\n"],
            description_content_type=["text/x-rst"],
            keywords=["demo, test"],
            home_page=["https://example.com/"],
            download_url=["https://example.com/demo.tar.gz"],
            author=["A. Author"],
            author_email=["A. Author <author@example.com>"],
            maintainer_email=["maintainer@example.com"],
            license_expression=["MIT OR Apache-2.0"],
            license_file=["LICENSE", "LICENSES/Apache-2.0.txt"],
            classifiers=["Typing :: Typed", "Programming Language :: Python :: 3"],
            requires_dist=["packaging>=24", 'tomli; python_version < "3.11"'],
            requires_python=[">=3.11"],
            project_urls=["Source, https://example.com/src", "Issues, https://example.com/issues"],
            provides_extra=["cli"],
            provides_dist=["demo-pkg"],
            dynamic=["Requires-Dist"],
            platform=["any"],
        ),
        id="every-field",
    ),
    pytest.param(form(summary=["UNKNOWN"]), id="unknown-placeholder-dropped"),
    pytest.param(form(summary=[""]), id="empty-value-is-absent"),
    pytest.param(form(summary=["a" * 512]), id="summary-512"),
    pytest.param(form(author_email=["Foo <>"]), id="email-without-address"),
    pytest.param(form(metadata_version=["1.0"], license=["MIT"]), id="metadata-1.0"),
    # PyPI refuses these (they keep a package off PyPI): a private index is where such a package belongs.
    pytest.param(form(classifiers=["Private :: Do Not Upload", "Private :: Internal"]), id="private-classifiers"),
]


@pytest.mark.parametrize("fields", ACCEPTED)
def test_form_accepted(fields: Fields) -> None:
    metadata = check_form_metadata(fields)
    assert (metadata.name, str(metadata.version)) == ("demo-pkg", "1.0")


def test_form_metadata_is_parsed() -> None:
    metadata = check_form_metadata(form(keywords=["a, b"], license_file=["LICENSE"], project_urls=["Home, https://x/"]))
    assert metadata.keywords == ["a", "b"]
    assert metadata.license_files == ["LICENSE"]
    assert metadata.project_urls == {"Home": "https://x/"}


def test_nul_is_escaped_like_pypi() -> None:
    assert check_form_metadata(form(summary=["a\x00b"])).summary == "a\\x00b"


REFUSED = [
    # Warehouse's test_fails_invalid_post_data, as far as the metadata goes
    pytest.param(
        form(metadata_version=None), "invalid_metadata_version", f"None is not a valid metadata version. {CORE}"
    ),
    pytest.param(
        form(metadata_version=["-1"]), "invalid_metadata_version", f"'-1' is not a valid metadata version. {CORE}"
    ),
    pytest.param(
        form(metadata_version=["2.6"]), "invalid_metadata_version", f"'2.6' is not a valid metadata version. {CORE}"
    ),
    pytest.param(form(version=[""], summary=["a\nb"]), "invalid_version", f"'version' is a required field. {CORE}"),
    pytest.param(form(version=["dog"]), "invalid_version", f"'dog' is invalid for 'version'. {CORE}"),
    pytest.param(form(version=["1.0.dev.a1"]), "invalid_version", f"'1.0.dev.a1' is invalid for 'version'. {CORE}"),
    pytest.param(
        form(version=["1.0+local"]),
        "local_version",
        f"The use of local versions in '1.0+local' is not allowed. {LOCAL}",
    ),
    pytest.param(form(name=None), "invalid_name", f"'name' is a required field. {CORE}"),
    pytest.param(
        form(summary=["A" * 513]), "invalid_summary", f"'summary' field must be 512 characters or less. {CORE}"
    ),
    pytest.param(form(summary=["A\nB"]), "invalid_summary", f"'summary' must be a single line. {CORE}"),
    pytest.param(form(summary=["A\rB"]), "invalid_summary", f"'summary' must be a single line. {CORE}"),
    # classifiers (trove-classifiers)
    pytest.param(
        form(classifiers=["Invalid :: Classifier"]),
        "invalid_classifier",
        f"'Invalid :: Classifier' is not a valid classifier. {CORE}",
    ),
    pytest.param(
        form(classifiers=["Zzz :: Invalid", "Natural Language :: Ukranian"]),  # codespell:ignore
        "invalid_classifier",
        f"'Zzz :: Invalid' is not a valid classifier. {CORE}",
        id="invalid-before-deprecated",
    ),
    pytest.param(
        form(classifiers=["Natural Language :: Ukranian"]),  # codespell:ignore
        "deprecated_classifier",
        "The classifier 'Natural Language :: Ukranian' has been deprecated, use one of "  # codespell:ignore
        f"['Natural Language :: Ukrainian'] instead. {CORE}",
        id="deprecated-with-replacement",
    ),
    pytest.param(
        form(classifiers=["Topic :: Communications :: Chat :: AOL Instant Messenger"]),
        "deprecated_classifier",
        f"The classifier 'Topic :: Communications :: Chat :: AOL Instant Messenger' has been deprecated. {CORE}",
        id="deprecated-without-replacement",
    ),
    # licenses (PEP 639)
    pytest.param(
        form(license_expression=["MIT OR Apache-2.0"], license=["MIT LICENSE or Apache-2.0 License"]),
        "invalid_license",
        "License is deprecated when License-Expression is present. Only License-Expression should be present. " + CORE,
        id="license-with-license-expression",
    ),
    pytest.param(
        form(license_expression=["MIT OR Nonsense-1.0"]),
        "invalid_license",
        f"'MIT OR Nonsense-1.0' is invalid for 'license-expression'. {CORE}",
    ),
    pytest.param(
        form(metadata_version=["2.3"], license_expression=["MIT"]),
        "invalid_license",
        f"license-expression introduced in metadata version 2.4, not 2.3. {CORE}",
        id="license-expression-too-new",
    ),
    pytest.param(
        form(license_file=["../LICENSE"]),
        "invalid_license_file",
        f"'../LICENSE' is invalid for 'license-file', parent directory indicators are not allowed. {CORE}",
    ),
    pytest.param(
        form(license_file=["/LICENSE"]),
        "invalid_license_file",
        f"'/LICENSE' is invalid for 'license-file', paths must be relative. {CORE}",
    ),
    # addresses and URLs
    pytest.param(
        form(author_email=["Foo <test>"]),
        "invalid_email",
        f"'test' is not a valid email address: An email address must have an @-sign. {CORE}",
    ),
    pytest.param(
        form(maintainer_email=["Maintainer <foo@bar>"]),
        "invalid_email",
        "'foo@bar' is not a valid email address: The part after the @-sign is not valid. It should have a period. "
        + CORE,
    ),
    pytest.param(
        form(home_page=["irc://example.com/"]), "invalid_url", f"'irc://example.com/' is not a valid url. {CORE}"
    ),
    pytest.param(form(download_url=["example.com"]), "invalid_url", f"'example.com' is not a valid url. {CORE}"),
    pytest.param(form(project_urls=[", https://example.com/"]), "invalid_url", f"Must have a label. {CORE}"),
    pytest.param(
        form(project_urls=[f"{'a' * 33}, https://example.com/"]),
        "invalid_url",
        f"'{'a' * 33}' must be 32 characters or less. {CORE}",
    ),
    pytest.param(form(project_urls=["IRC,"]), "invalid_url", f"Must have a URL. {CORE}"),
    pytest.param(
        form(project_urls=["IRC, irc://example.com/"]),
        "invalid_url",
        f"'irc://example.com/' is not a valid url. {CORE}",
    ),
    # dependencies and dynamic fields
    pytest.param(
        form(requires_dist=["foo @ https://example.com/foo-1.0.tar.gz"]),
        "invalid_dependency",
        f"Can't have direct dependency: foo @ https://example.com/foo-1.0.tar.gz. {CORE}",
    ),
    pytest.param(
        form(provides_dist=["foo @ https://example.com/foo-1.0.tar.gz"]),
        "invalid_dependency",
        f"Can't have direct dependency: 'foo @ https://example.com/foo-1.0.tar.gz'. {CORE}",
    ),
    pytest.param(
        form(requires_dist=["foo >= dog"]), "invalid_dependency", f"'foo >= dog' is invalid for 'requires-dist'. {CORE}"
    ),
    pytest.param(form(requires_python=["3"]), "invalid_dependency", f"'3' is invalid for 'requires-python'. {CORE}"),
    pytest.param(form(dynamic=["Invalid"]), "invalid_dynamic", f"'invalid' is not a valid dynamic field. {CORE}"),
    pytest.param(form(dynamic=["Name"]), "invalid_dynamic", f"'name' is not allowed as a dynamic field. {CORE}"),
    pytest.param(
        form(dynamic=["Metadata-Version"]),
        "invalid_dynamic",
        f"'metadata-version' is not allowed as a dynamic field. {CORE}",
    ),
    # description content type
    pytest.param(
        form(description_content_type=["text/plain; charset=latin-1"]),
        "invalid_description_content_type",
        f"'description-content-type' can only specify the UTF-8 charset, not 'latin-1'. {CORE}",
        id="charset",
    ),
    # a field sent twice
    pytest.param(form(summary=["a", "b"]), "duplicate_field", f"'summary' has invalid data. {CORE}"),
    pytest.param(form(keywords=["a", "b"]), "duplicate_field", f"'keywords' has invalid data. {CORE}"),
    pytest.param(
        form(project_urls=["Home, https://a/", "Home, https://b/"]),
        "duplicate_field",
        f"'project_urls' has invalid data. {CORE}",
    ),
    # which problem PyPI reports: metadata-version, name, version, then the first field by name
    pytest.param(
        form(metadata_version=["9.9"], version=["dog"], summary=["a\nb"]),
        "invalid_metadata_version",
        f"'9.9' is not a valid metadata version. {CORE}",
        id="metadata-version-first",
    ),
    pytest.param(
        form(version=["1.0+local"], summary=["a" * 600], classifiers=["Bad :: One"]),
        "local_version",
        f"The use of local versions in '1.0+local' is not allowed. {LOCAL}",
        id="version-before-others",
    ),
    pytest.param(
        form(summary=["a" * 600], classifiers=["Bad :: One"], home_page=["ftp://x/"]),
        "invalid_classifier",
        f"'Bad :: One' is not a valid classifier. {CORE}",
        id="then-by-field-name",
    ),
    pytest.param(
        form(summary=["a\nb"], license_file=["../x"]),
        "invalid_license_file",
        f"'../x' is invalid for 'license-file', parent directory indicators are not allowed. {CORE}",
        id="packaging-before-pypi-rules",
    ),
]


@pytest.mark.parametrize(("fields", "reason", "message"), REFUSED)
def test_form_refused(fields: Fields, reason: str, message: str) -> None:
    with pytest.raises(GatewayError) as caught:
        check_form_metadata(fields)
    assert (caught.value.status, caught.value.reason, caught.value.message) == (400, reason, message)


@pytest.mark.parametrize(
    ("fields", "reason", "start", "end"),
    [
        pytest.param(
            form(description_content_type=["text/html"]),
            "invalid_description_content_type",
            "'description-content-type' must be one of [",
            "], not 'text/html'.",
            id="content-type",
        ),
        pytest.param(
            form(description_content_type=["text/markdown; variant=Bogus"]),
            "invalid_description_content_type",
            "valid Markdown variants for 'description-content-type' are [",
            "], not 'Bogus'.",
            id="markdown-variant",
        ),
        pytest.param(
            form(obsoletes_dist=["foo >= dog"]), "invalid_dependency", "'foo >= dog' is invalid: ", "^.", id="obsoletes"
        ),
    ],
)
def test_refused_in_packaging_words(fields: Fields, reason: str, start: str, end: str) -> None:
    """packaging lists choices from a set (their order varies between runs) and words parse errors its own way."""
    with pytest.raises(GatewayError) as caught:
        check_form_metadata(fields)
    assert caught.value.reason == reason
    assert caught.value.message.startswith(start)
    assert caught.value.message.endswith(f"{end} {CORE}")


def test_core_metadata_file() -> None:
    content = b"Metadata-Version: 2.4\nName: demo-pkg\nVersion: 1.0\nLicense-Expression: MIT\nLicense-File: LICENSE\n"
    metadata = check_core_metadata(content)
    assert (metadata.name, metadata.license_expression, metadata.license_files) == ("demo-pkg", "MIT", ["LICENSE"])


@pytest.mark.parametrize(
    ("content", "reason", "message"),
    [
        (
            b"Metadata-Version: 2.1\nName: spam\nVersion: 2.0\nClassifier: Something :: Or :: Other\n",
            "invalid_classifier",
            f"'Something :: Or :: Other' is not a valid classifier. {CORE}",
        ),
        (
            b"Metadata-Version: 2.1\nName: spam\nVersion: 2.0\nHome-page: irc://example.com/\n",
            "invalid_url",
            f"'irc://example.com/' is not a valid url. {CORE}",
        ),
        (
            b"Metadata-Version: 2.1\nName: spam\nVersion: 2.0\nColour: blue\n",
            "invalid_metadata",
            f"unrecognized field: 'colour'. {CORE}",
        ),
        (b"Name: spam\nVersion: 2.0\n", "invalid_metadata_version", f"None is not a valid metadata version. {CORE}"),
    ],
)
def test_core_metadata_file_refused(content: bytes, reason: str, message: str) -> None:
    with pytest.raises(GatewayError) as caught:
        check_core_metadata(content)
    assert (caught.value.reason, caught.value.message) == (reason, message)


RENDERED = [
    pytest.param(form(), id="no-description"),
    pytest.param(form(description=["Demo\n====\n\nA *demo*.\n"]), id="rst-by-default"),
    pytest.param(form(description=["# Demo\n\nA *demo*.\n"], description_content_type=["text/markdown"]), id="md"),
    pytest.param(
        form(description=[".. invalid-directive::"], description_content_type=["text/plain"]), id="plain-always"
    ),
    pytest.param(
        form(description=["# Demo\n"], description_content_type=["text/markdown; charset=UTF-8; variant=CommonMark"]),
        id="md-with-parameters",
    ),
]


@pytest.mark.parametrize("fields", RENDERED)
def test_description_renders(fields: Fields) -> None:
    metadata = check_form_metadata(fields)
    check_description(metadata.description, metadata.description_content_type)


NOT_RENDERED = [
    pytest.param(
        form(description=[".. invalid-directive::"], description_content_type=["text/x-rst"]),
        f"The description failed to render for 'text/x-rst'. {HELP}",
        id="rst",
    ),
    pytest.param(
        form(description=[".. invalid-directive::"]),
        f"The description failed to render in the default format of reStructuredText. {HELP}",
        id="rst-by-default",
    ),
    pytest.param(
        form(description=["Title\n===\n\n`unclosed"], description_content_type=["text/x-rst; charset=UTF-8"]),
        f"The description failed to render for 'text/x-rst; charset=UTF-8'. {HELP}",
        id="rst-warning",
    ),
    pytest.param(
        form(description=["[demo]: https://example.com/"], description_content_type=["text/markdown"]),
        f"The description failed to render for 'text/markdown'. {HELP}",
        id="markdown-renders-nothing",
    ),
]


@pytest.mark.parametrize(("fields", "message"), NOT_RENDERED)
def test_description_does_not_render(fields: Fields, message: str) -> None:
    metadata = check_form_metadata(fields)
    with pytest.raises(GatewayError) as caught:
        check_description(metadata.description, metadata.description_content_type)
    assert (caught.value.status, caught.value.reason, caught.value.message) == (400, "invalid_description", message)


def test_description_help_url() -> None:
    metadata = check_form_metadata(form(description=[".. invalid-directive::"]))
    with pytest.raises(GatewayError, match=r"See https://index\.example/help for more information\.$"):
        check_description(
            metadata.description, metadata.description_content_type, help_url="https://index.example/help"
        )


# Warehouse's test_upload_succeeds_with_wheel platforms, and a few more.
PYPI_PLATFORMS = [
    "any",
    "win32",
    "win_amd64",
    "win_arm64",
    "win_ia64",
    "manylinux1_i686",
    "manylinux1_x86_64",
    "manylinux2010_i686",
    "manylinux2010_x86_64",
    "manylinux2014_i686",
    "manylinux2014_x86_64",
    "manylinux2014_aarch64",
    "manylinux2014_armv7l",
    "manylinux2014_ppc64",
    "manylinux2014_ppc64le",
    "manylinux2014_s390x",
    "manylinux_2_5_i686",
    "manylinux_2_12_x86_64",
    "manylinux_2_17_aarch64",
    "manylinux_2_17_armv7l",
    "manylinux_2_17_ppc64",
    "manylinux_2_17_ppc64le",
    "manylinux_2_39_riscv64",
    "manylinux_3_0_s390x",
    "musllinux_1_1_x86_64",
    "musllinux_1_2_aarch64",
    "linux_armv6l",
    "linux_armv7l",
    "macosx_10_5_ppc",
    "macosx_10_5_ppc64",
    "macosx_10_5_i386",
    "macosx_10_5_intel",
    "macosx_10_5_fat",
    "macosx_10_5_fat3",
    "macosx_10_5_fat64",
    "macosx_10_5_universal",
    "macosx_10_13_x86_64",
    "macosx_10_15_arm64",
    "macosx_11_0_x86_64",
    "macosx_11_0_arm64",
    "macosx_14_0_universal2",
    "macosx_15_0_universal2",
    "macosx_26_0_arm64",
    "ios_13_0_arm64_iphoneos",
    "ios_13_0_arm64_iphonesimulator",
    "ios_13_0_x86_64_iphonesimulator",
    "ios_15_4_arm64_iphoneos",
    "android_27_armeabi_v7a",
    "android_27_arm64_v8a",
    "android_27_x86",
    "android_27_x86_64",
    "pyemscripten_2026_0_wasm32",
    "macosx_10_6_intel.macosx_10_9_intel.macosx_10_9_x86_64.macosx_10_10_intel.macosx_10_10_x86_64",
    "manylinux_2_17_x86_64.manylinux2014_x86_64",
]
# Warehouse's test_upload_fails_with_unsupported_wheel_plat, and a few more: (platforms, the tag named).
NOT_PYPI_PLATFORMS = [
    ("linux_x86_64", "linux_x86_64"),
    ("linux_x86_64.win32", "linux_x86_64"),
    ("win32.linux_x86_64", "linux_x86_64"),
    ("macosx_9_2_x86_64", "macosx_9_2_x86_64"),
    ("macosx_11_2_arm64", "macosx_11_2_arm64"),
    ("macosx_16_2_arm64", "macosx_16_2_arm64"),
    ("macosx_10_15_amd64", "macosx_10_15_amd64"),
    ("macosx_27_0_arm64", "macosx_27_0_arm64"),
    ("manylinux_2_17_sparc", "manylinux_2_17_sparc"),
    ("musllinux_1_1_ppc64", "musllinux_1_1_ppc64"),
    ("ios_13_0_armv7_iphoneos", "ios_13_0_armv7_iphoneos"),
    ("android_27_mips", "android_27_mips"),
    ("pyemscripten_2026_0_wasm64", "pyemscripten_2026_0_wasm64"),
    ("cygwin", "cygwin"),
]


def wheel_name(platforms: str) -> str:
    return f"demo_pkg-1.0-cp312-cp312-{platforms}.whl"


@pytest.mark.parametrize("platforms", PYPI_PLATFORMS)
def test_pypi_platforms(platforms: str) -> None:
    check_platform_tags(wheel_name(platforms))
    check_platform_tags(wheel_name(platforms), "any")


@pytest.mark.parametrize(("platforms", "tag"), NOT_PYPI_PLATFORMS)
def test_other_platforms_refused_under_pypi(platforms: str, tag: str) -> None:
    filename = wheel_name(platforms)
    with pytest.raises(GatewayError) as caught:
        check_platform_tags(filename, "pypi")
    message = f"Binary wheel '{filename}' has an unsupported platform tag '{tag}'."
    assert (caught.value.status, caught.value.reason, caught.value.message) == (400, "unsupported_platform", message)


@pytest.mark.parametrize(("platforms", "tag"), NOT_PYPI_PLATFORMS)
def test_other_platforms_accepted_under_any(platforms: str, tag: str) -> None:
    check_platform_tags(wheel_name(platforms), "any")


def test_platform_tags_are_compared_in_lowercase_like_packaging() -> None:
    assert is_pypi_platform("win_amd64") and not is_pypi_platform("WIN_AMD64")
    check_platform_tags(wheel_name("WIN_AMD64"))


def test_platform_check_needs_a_wheel_filename() -> None:
    with pytest.raises(GatewayError) as caught:
        check_platform_tags("demo_pkg-1.0.whl")
    assert (caught.value.reason, caught.value.message) == (
        "invalid_filename",
        "Invalid wheel filename (wrong number of parts): 'demo_pkg-1.0'",
    )


def test_every_reason_is_documented_and_produced() -> None:
    produced = {case.values[1] for case in REFUSED} | {"invalid_description", "unsupported_platform"}
    produced |= {"invalid_metadata"}  # test_core_metadata_file_refused
    assert produced == set(REASONS)
    assert all(text and "\n" not in text for text in REASONS.values())
