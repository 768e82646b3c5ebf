"""PyPI's core-metadata rules (forklift metadata.py and its upload view), in PyPI's order and words.

PyPI validates the metadata twine sends as form fields, not the file's own METADATA: `check_form_metadata`
does the same, and `check_core_metadata` applies the identical rules to a METADATA or PKG-INFO for an index
that wants the file held to them too. Fields go through packaging.metadata, then PyPI's own rules on top
(summary length, e-mail addresses, URLs, classifiers from trove-classifiers, PEP 639 licenses, dynamic
fields); of all problems found PyPI reports one, picked by field. The description's rendering is
`description`, the wheel's platform tags `platform_tags`.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple, cast, get_args, get_origin, get_type_hints

import email_validator
from packaging.metadata import _RAW_TO_EMAIL_MAPPING, InvalidMetadata, Metadata, RawMetadata
from packaging.requirements import InvalidRequirement, Requirement
from rfc3986 import exceptions as uri_errors  # type: ignore[import-untyped]
from rfc3986 import uri_reference, validators
from trove_classifiers import all_classifiers, deprecated_classifiers

from gateway.errors import GatewayError

CORE_METADATA_URL = "https://packaging.python.org/specifications/core-metadata"
LOCAL_VERSION_URL = (
    "https://packaging.python.org/en/latest/specifications/version-specifiers/#local-version-identifiers"
)
SUPPORTED_METADATA_VERSIONS = frozenset({"1.0", "1.1", "1.2", "2.1", "2.2", "2.3", "2.4", "2.5"})

MAX_SUMMARY_LENGTH = 512
MAX_URL_LABEL_LENGTH = 32

# PyPI reports the problem of the first of these fields that has one, else of the first field by name.
_FIELD_PRIORITY = ("metadata-version", "name", "version")
_FIELD_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "metadata-version": "invalid_metadata_version",
        "name": "invalid_name",
        "version": "invalid_version",
        "summary": "invalid_summary",
        "description-content-type": "invalid_description_content_type",
        "classifier": "invalid_classifier",
        "license": "invalid_license",
        "license-expression": "invalid_license",
        "license-file": "invalid_license_file",
        "author-email": "invalid_email",
        "maintainer-email": "invalid_email",
        "home-page": "invalid_url",
        "download-url": "invalid_url",
        "project-url": "invalid_url",
        "requires-dist": "invalid_dependency",
        "provides-dist": "invalid_dependency",
        "obsoletes-dist": "invalid_dependency",
        "requires-python": "invalid_dependency",
        "provides-extra": "invalid_dependency",
        "dynamic": "invalid_dynamic",
    }
)
_RAW_KINDS = get_type_hints(RawMetadata)
# twine names list fields in the singular where the metadata spec's raw name is plural.
_FORM_SINGULAR = MappingProxyType(
    {
        "platforms": "platform",
        "supported_platforms": "supported_platform",
        "license_files": "license_file",
        "import_names": "import_name",
        "import_namespaces": "import_namespace",
    }
)
_FORM_TO_RAW = MappingProxyType({_FORM_SINGULAR.get(raw, raw): raw for raw in _RAW_KINDS})
# Core-metadata fields PyPI lets a distribution declare Dynamic (PEP 643, PEP 794).
_DYNAMIC_FIELDS = frozenset(
    name.lower()
    for name in (
        "Platform",
        "Supported-Platform",
        "Summary",
        "Description",
        "Description-Content-Type",
        "Keywords",
        "Home-Page",
        "Download-Url",
        "Author",
        "Author-Email",
        "Maintainer",
        "Maintainer-Email",
        "License",
        "License-Expression",
        "License-File",
        "Classifier",
        "Requires-Dist",
        "Requires-Python",
        "Requires-External",
        "Project-Url",
        "Provides-Extra",
        "Provides-Dist",
        "Obsoletes-Dist",
        "Requires",
        "Provides",
        "Obsoletes",
        "Import-Name",
        "Import-Namespace",
    )
)
_CLASSIFIERS = frozenset(all_classifiers)
_URL_VALIDATOR = (
    validators.Validator()
    .allow_schemes("http", "https")
    .require_presence_of("scheme")
    .check_validity_of("scheme", "host", "port", "path", "query")
)


class _Problem(NamedTuple):
    field: str  # the core-metadata field, as packaging names it in errors (e.g. "classifier")
    message: str
    reason: str


def check_form_metadata(fields: Mapping[str, Sequence[str]]) -> Metadata:
    """The upload form's metadata, validated as PyPI validates it; GatewayError(400) for the problem PyPI reports."""
    raw, duplicates = _raw_from_form(_sanitized(fields))
    if duplicates:
        raise _refusal([_Problem(key, f"{key!r} has invalid data", "duplicate_field") for key in duplicates])
    try:
        metadata = Metadata.from_raw(raw)
    except ExceptionGroup as group:
        raise _refusal(_problems_of(group)) from None
    _check_pypi_rules(metadata)
    return metadata


def check_core_metadata(content: bytes) -> Metadata:
    """A METADATA or PKG-INFO file held to the rules PyPI applies to the form (PyPI itself does not)."""
    try:
        metadata = Metadata.from_email(content)
    except ExceptionGroup as group:
        raise _refusal(_problems_of(group)) from None
    _check_pypi_rules(metadata)
    return metadata


def _sanitized(fields: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """PyPI's `sanitize` step, which looks at a field's last value: "UNKNOWN" (distutils' placeholder) drops
    the field, and a NUL makes the field that one value with the NUL escaped."""
    cleaned: dict[str, list[str]] = {}
    for key, values in fields.items():
        last = values[-1] if values else ""
        if last.strip() == "UNKNOWN":
            continue
        cleaned[key] = [last.replace("\x00", "\\x00")] if "\x00" in last else list(values)
    return cleaned


def _raw_from_form(fields: Mapping[str, Sequence[str]]) -> tuple[RawMetadata, list[str]]:
    """The form as packaging's RawMetadata, and the fields that cannot be read as one (sent twice)."""
    raw: dict[str, object] = {}
    duplicates: list[str] = []
    for key in sorted(fields):
        name = _FORM_TO_RAW.get(key)
        values = list(fields[key])
        if name is None or not values or values == [""]:  # an empty value counts as not sent
            continue
        kind = _RAW_KINDS[name]
        if name == "keywords" and len(values) == 1:
            raw[name] = [keyword.strip() for keyword in values[0].split(",")]
        elif kind is str and len(values) == 1:
            raw[name] = values[0]
        elif get_origin(kind) is list and name != "keywords":
            raw[name] = values
        elif get_origin(kind) is dict and get_args(kind) == (str, str):
            urls = _project_urls(values)
            if urls is None:
                duplicates.append(key)
            else:
                raw[name] = urls
        else:
            duplicates.append(key)
    return cast(RawMetadata, raw), duplicates  # every key is one of RawMetadata's


def _project_urls(values: Sequence[str]) -> dict[str, str] | None:
    """'label, url' pairs as a mapping; None when a label repeats (packaging then calls the field unparsable)."""
    urls: dict[str, str] = {}
    for value in values:
        label, _, url = (part.strip() for part in value.partition(","))
        if label in urls:
            return None
        urls[label] = url
    return urls


def _problems_of(group: ExceptionGroup[Exception]) -> list[_Problem]:
    problems = []
    for error in group.exceptions:
        if not isinstance(error, InvalidMetadata):
            raise error
        problems.append(_Problem(error.field, str(error), _FIELD_REASONS.get(error.field, "invalid_metadata")))
    return problems


def _check_pypi_rules(metadata: Metadata) -> None:
    """PyPI's rules on top of packaging's, each problem in PyPI's words; the first by field is reported."""
    problems = [
        *_version_problems(metadata),
        *_summary_problems(metadata),
        *_email_problems(metadata),
        *_classifier_problems(metadata),
        *_url_problems(metadata),
        *_dependency_problems(metadata),
        *_dynamic_problems(metadata),
        *_license_problems(metadata),
    ]
    if problems:
        raise _refusal(problems)


def _version_problems(metadata: Metadata) -> list[_Problem]:
    problems = []
    if metadata.metadata_version not in SUPPORTED_METADATA_VERSIONS:
        message = f"{metadata.metadata_version!r} is not a valid metadata version"
        problems.append(_Problem("metadata-version", message, "invalid_metadata_version"))
    if metadata.version.local:
        message = f"The use of local versions in '{metadata.version}' is not allowed."
        problems.append(_Problem("version", message, "local_version"))
    return problems


def _summary_problems(metadata: Metadata) -> list[_Problem]:
    if metadata.summary is not None and len(metadata.summary) > MAX_SUMMARY_LENGTH:
        message = f"'summary' field must be {MAX_SUMMARY_LENGTH} characters or less."
        return [_Problem("summary", message, "invalid_summary")]
    return []


def _email_problems(metadata: Metadata) -> list[_Problem]:
    """Addresses must be RFC 5322 ones (deliverability is not asked: no DNS lookups)."""
    problems = []
    for name, value in (("author_email", metadata.author_email), ("maintainer_email", metadata.maintainer_email)):
        _, address = email.utils.parseaddr(value or "")
        if not address:
            continue
        try:
            email_validator.validate_email(address, check_deliverability=False)
        except email_validator.EmailNotValidError as exc:
            field = _RAW_TO_EMAIL_MAPPING[name]
            problems.append(_Problem(field, f"{address!r} is not a valid email address: {exc}", "invalid_email"))
    return problems


def _classifier_problems(metadata: Metadata) -> list[_Problem]:
    """Classifiers from trove-classifiers, none deprecated. Unlike PyPI, `Private :: …` ones are taken: they
    exist to keep a package off PyPI, and a private index is where such a package belongs."""
    given = {classifier for classifier in metadata.classifiers or () if not classifier.startswith("Private ::")}
    problems = [
        _Problem("classifier", f"{classifier!r} is not a valid classifier.", "invalid_classifier")
        for classifier in sorted(given - _CLASSIFIERS)
    ]
    for classifier in sorted(given & deprecated_classifiers.keys()):
        replacements = deprecated_classifiers[classifier]
        instead = f", use one of {replacements} instead" if replacements else ""
        message = f"The classifier {classifier!r} has been deprecated{instead}."
        problems.append(_Problem("classifier", message, "deprecated_classifier"))
    return problems


def _valid_url(url: str) -> bool:
    try:
        _URL_VALIDATOR.validate(uri_reference(url).normalize())
    except uri_errors.ValidationError:
        return False
    return True


def _url_problems(metadata: Metadata) -> list[_Problem]:
    problems = [
        _Problem(_RAW_TO_EMAIL_MAPPING[name], f"{url!r} is not a valid url.", "invalid_url")
        for name, url in (("home_page", metadata.home_page), ("download_url", metadata.download_url))
        if url is not None and not _valid_url(url)
    ]
    for label, url in (metadata.project_urls or {}).items():
        if not label:
            problem = "Must have a label"
        elif len(label) > MAX_URL_LABEL_LENGTH:
            problem = f"{label!r} must be {MAX_URL_LABEL_LENGTH} characters or less."
        elif not url:
            problem = "Must have a URL"
        elif not _valid_url(url):
            problem = f"{url!r} is not a valid url"
        else:
            continue
        problems.append(_Problem("project-url", problem, "invalid_url"))
    return problems


def _dependency_problems(metadata: Metadata) -> list[_Problem]:
    """Requirements must parse (packaging does not parse Provides-Dist and Obsoletes-Dist) and name no URL."""
    problems = []
    for name, values in (("provides_dist", metadata.provides_dist), ("obsoletes_dist", metadata.obsoletes_dist)):
        field = _RAW_TO_EMAIL_MAPPING[name]
        for value in values or ():
            try:
                requirement = Requirement(value)
            except InvalidRequirement as exc:
                problems.append(_Problem(field, f"{value!r} is invalid: {exc}", "invalid_dependency"))
                continue
            if requirement.url is not None:
                problems.append(_Problem(field, f"Can't have direct dependency: {value!r}", "invalid_dependency"))
    problems += [
        _Problem("requires-dist", f"Can't have direct dependency: {requirement}", "invalid_dependency")
        for requirement in metadata.requires_dist or ()
        if requirement.url is not None
    ]
    return problems


def _dynamic_problems(metadata: Metadata) -> list[_Problem]:
    return [
        _Problem("dynamic", f"Dynamic field {field!r} is not a valid dynamic field.", "invalid_dynamic")
        for field in metadata.dynamic or ()
        if field not in _DYNAMIC_FIELDS
    ]


def _license_problems(metadata: Metadata) -> list[_Problem]:
    """PEP 639: License-Expression replaces License, so the two together are refused."""
    if metadata.license and metadata.license_expression:
        message = "License is deprecated when License-Expression is present. Only License-Expression should be present."
        return [_Problem("license", message, "invalid_license")]
    return []


def _refusal(problems: Sequence[_Problem]) -> GatewayError:
    """PyPI's one message for a set of problems: the first problem of the most important field."""
    by_field: dict[str, list[_Problem]] = {}
    for problem in problems:
        by_field.setdefault(problem.field, []).append(problem)
    field = next((name for name in _FIELD_PRIORITY if name in by_field), min(by_field))
    chosen = by_field[field][0]
    text = chosen.message if chosen.message.endswith(".") else f"{chosen.message}."
    local = field == "version" and any("use of local versions" in problem.message for problem in by_field[field])
    url = LOCAL_VERSION_URL if local else CORE_METADATA_URL
    return GatewayError(400, f"{text} See {url} for more information.", chosen.reason)
