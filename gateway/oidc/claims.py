"""Trusted publishers, and Warehouse's rules for whether an ID token's claims were issued to one of them.

A publisher is what a project's owner configures ("GitHub octo-org/sampleproject, workflow release.yml");
the claims are those of an ID token whose signature, issuer, audience and times were already verified
(`gateway.oidc.verify`). This module only decides whether the one matches the other, claim by claim, with
the rules of Warehouse's `warehouse/oidc/models/` (GitHub, GitLab) so that a workflow PyPI accepts is
accepted here and one PyPI refuses is refused with the same words. Forgejo Actions sends GitHub-shaped
claims; a generic issuer is matched on its exact `sub` plus equalities the owner chose.

Claims are text the token's holder chose (a branch name, an environment): a failure shows at most
`MAX_SHOWN` characters of any claim, with every non-printable character removed, and is one line.
Pure: plain values in and out, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

Kind = Literal["github", "gitlab", "forgejo", "generic"]
KINDS: tuple[Kind, ...] = get_args(Kind)

MAX_SHOWN = 200  # characters of a claim's value a failure may show
MAX_FIELD = 255  # a configured name, path or environment (Warehouse's limit for environments)
MAX_GENERIC = 1024  # a generic publisher's subject and claim values

NOT_FOUND = "Publisher with matching claims was not found"
NO_WORKFLOW = "Could not extract workflow filename from OIDC claims"
PULL_REQUEST_TARGET = "Publishing from a workflow invoked via 'pull_request_target' is not supported."


@dataclass(frozen=True)
class GitHubPublisher:
    """Kinds "github" and "forgejo". `repository_owner_id` is the owner's immutable id: a deleted account's
    name taken over by someone else keeps the name, not the id (Warehouse's resurrection defence)."""

    repository_owner: str
    repository_owner_id: str
    repository_name: str
    workflow_filename: str  # a bare file name: "release.yml"
    environment: str = ""  # "" = any environment; stored lower-cased (GitHub's are case-insensitive)


@dataclass(frozen=True)
class GitLabPublisher:
    namespace: str  # a user or group/subgroup
    project: str
    workflow_filepath: str  # the top-level pipeline file: ".gitlab-ci.yml" or "ci/release.yml"
    environment: str = ""  # "" = any environment; exact (GitLab's are case-sensitive)


@dataclass(frozen=True)
class GenericPublisher:
    subject: str  # the exact `sub`
    claims: tuple[tuple[str, str], ...] = ()  # further exact claim equalities, sorted by name


Publisher = GitHubPublisher | GitLabPublisher | GenericPublisher

# Where each kind keeps the workflows `job_workflow_ref` names. Forgejo reads `.forgejo/workflows/` and,
# when a repository has none, `.github/workflows/`; its documentation shows the former in `workflow_ref`.
_WORKFLOW_DIRS: dict[Kind, tuple[str, ...]] = {
    "github": (".github/workflows",),
    "forgejo": (".forgejo/workflows", ".github/workflows"),
}

# Claims that must be present (not null) before any publisher is compared, in the order they are reported
# (GitHub's and Forgejo's with the workflow's claim between `repository_owner_id` and `jti`). `jti` is the
# exchange's replay defence (stored once), so every kind requires it.
_REQUIRED: dict[Kind, tuple[str, ...]] = {
    "github": ("repository", "repository_owner", "repository_owner_id", "jti", "event_name", "ref", "sha"),
    "forgejo": ("repository", "repository_owner", "repository_owner_id", "jti", "event_name", "ref", "sha"),
    "gitlab": ("sub", "project_path", "ci_config_ref_uri", "jti", "ref_path", "sha"),
    "generic": ("sub", "jti"),
}

# Claims the issuer's signature, `verify` or the exchange already checked: a generic publisher may not
# configure them.
_RESERVED_CLAIMS = frozenset({"iss", "aud", "exp", "iat", "nbf", "jti", "sub"})

# Warehouse's expressions (`warehouse/oidc/models/github.py`, `gitlab.py`): the workflow file named by a
# workflow ref, whose file name and ref may both hold `@`.
_WORKFLOW_FILENAME = re.compile(r"[^/]+\.(yml|yaml)(?=@)")
_WORKFLOW_FILEPATH = re.compile(r"(?<=//)(.*[^/]\.(yml|yaml))(?=@)")

# Warehouse's form expressions (`warehouse/oidc/forms/github.py`, `gitlab.py`), matched whole (`fullmatch`:
# Warehouse's `$` also lets a trailing newline through).
_GITHUB_OWNER = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]*")
_FORGEJO_OWNER = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")  # Forgejo's user names also take '_' and '.'
_GITHUB_REPOSITORY = re.compile(r"[a-zA-Z0-9-_.]+")
_GITHUB_BAD_ENVIRONMENT = re.compile(r"[\x00-\x1F\x7F'\"`,;\\]")
_GITLAB_PROJECT = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*[a-zA-Z0-9]")
_GITLAB_NAMESPACE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-_./+]*[a-zA-Z0-9]")
_GITLAB_ENVIRONMENT = re.compile(r"[a-zA-Z0-9\-_/${} ]+")
_CONSECUTIVE_SPECIALS = re.compile(r"[._-]{2}")
_OWNER_ID = re.compile(r"[0-9]{1,20}")
_CLAIM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
_CLAIM_PREFIX = "claim."

_GITHUB_FIELDS = ("repository_owner", "repository_owner_id", "repository_name", "workflow_filename", "environment")
_GITLAB_FIELDS = ("namespace", "project", "workflow_filepath", "environment")


# -- configuration: fields in, publishers out ------------------------------------------------------------


def parse_publisher(kind: Kind, fields: Mapping[str, str]) -> Publisher:
    """The publisher the CLI's or the pages' `fields` describe (the names of the dataclass's fields; a
    generic publisher's equalities as `claim.NAME`), validated as Warehouse's forms validate them.

    Raises ValueError with one line for the user, naming the field and what to change.
    """
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ValueError(f"kind: unknown publisher kind {_shown(kind)!r}; use one of {', '.join(KINDS)}")
    return parser(kind, fields)


def publisher_fields(publisher: Publisher) -> dict[str, str]:
    """The fields `parse_publisher` takes back to this publisher (how the store keeps it, as JSON)."""
    if isinstance(publisher, GitHubPublisher):
        return {name: getattr(publisher, name) for name in _GITHUB_FIELDS}
    if isinstance(publisher, GitLabPublisher):
        return {name: getattr(publisher, name) for name in _GITLAB_FIELDS}
    return {"subject": publisher.subject} | {_CLAIM_PREFIX + name: value for name, value in publisher.claims}


def describe(kind: Kind, publisher: Publisher) -> str:
    """One line for lists and the audit trail: "GitHub octo-org/sampleproject, workflow release.yml,
    environment pypi"."""
    if kind in _WORKFLOW_DIRS:
        github = _expect(GitHubPublisher, kind, publisher)
        label = "GitHub" if kind == "github" else "Forgejo"
        text = f"{label} {github.repository_owner}/{github.repository_name}, workflow {github.workflow_filename}"
        return text + (f", environment {github.environment}" if github.environment else "")
    if kind == "gitlab":
        gitlab = _expect(GitLabPublisher, kind, publisher)
        text = f"GitLab {gitlab.namespace}/{gitlab.project}, CI config {gitlab.workflow_filepath}"
        return text + (f", environment {gitlab.environment}" if gitlab.environment else "")
    generic = _expect(GenericPublisher, kind, publisher)
    equalities = "".join(f", {name} = {value}" for name, value in generic.claims)
    return f"OIDC subject {generic.subject}{equalities}"


def _parse_github(kind: Kind, fields: Mapping[str, str]) -> GitHubPublisher:
    values = _fields(kind, fields, _GITHUB_FIELDS)
    label = "GitHub" if kind == "github" else "Forgejo"
    owner = values.get("repository_owner", "")
    if not owner:
        raise ValueError(f"repository_owner: Specify {label} repository owner (username or organization)")
    pattern, characters = (_GITHUB_OWNER, "'-'") if kind == "github" else (_FORGEJO_OWNER, "'-', '_' and '.'")
    if len(owner) > MAX_FIELD or not pattern.fullmatch(owner):
        raise ValueError(
            f"repository_owner: Invalid {label} user or organization name. Use letters, digits and {characters}, "
            "starting with a letter or digit"
        )
    owner_id = values.get("repository_owner_id", "")
    lookup = "https://api.github.com/users/" if kind == "github" else "https://<forgejo host>/api/v1/users/"
    if not _OWNER_ID.fullmatch(owner_id):
        raise ValueError(
            f'repository_owner_id: Specify the owner\'s numeric id, the "id" that {lookup}{owner} answers '
            "(it survives renames, so a new account under an old name cannot publish)"
        )
    repository = values.get("repository_name", "")
    if not repository:
        raise ValueError("repository_name: Specify repository name")
    if len(repository) > MAX_FIELD or not _GITHUB_REPOSITORY.fullmatch(repository):
        raise ValueError("repository_name: Invalid repository name. Use letters, digits, '-', '_' and '.'")
    workflow = values.get("workflow_filename", "").strip()
    if not workflow:
        raise ValueError("workflow_filename: Specify workflow filename")
    if not workflow.endswith((".yml", ".yaml")):
        raise ValueError("workflow_filename: Workflow name must end with .yml or .yaml")
    if "/" in workflow:
        raise ValueError("workflow_filename: Workflow filename must be a filename only, without directories")
    if len(workflow) > MAX_FIELD or not workflow.isprintable() or _extract_filename(f"{workflow}@") != workflow:
        raise ValueError("workflow_filename: Give the workflow's file name, as in release.yml")
    environment = values.get("environment", "")
    if environment:
        _check_github_environment(environment)
    # GitHub's environment names are case-insensitive; Warehouse stores them lower-cased.
    return GitHubPublisher(owner, owner_id, repository, workflow, environment.lower())


def _check_github_environment(environment: str) -> None:
    if len(environment) > MAX_FIELD:
        raise ValueError("environment: Environment name is too long (maximum is 255 characters)")
    if environment.startswith(" "):
        raise ValueError("environment: Environment name may not start with whitespace")
    if environment.endswith(" "):
        raise ValueError("environment: Environment name may not end with whitespace")
    if _GITHUB_BAD_ENVIRONMENT.search(environment) or not environment.isprintable():
        raise ValueError(
            "environment: Environment name must not contain non-printable characters "
            'or the characters "\'", """, "`", ",", ";", "\\"'
        )


def _parse_gitlab(kind: Kind, fields: Mapping[str, str]) -> GitLabPublisher:
    values = _fields(kind, fields, _GITLAB_FIELDS)
    namespace = values.get("namespace", "")
    if not namespace:
        raise ValueError("namespace: Specify GitLab namespace (username or group/subgroup)")
    if namespace.lower().endswith((".git", ".atom")):
        raise ValueError("namespace: Name ends with .git or .atom")
    if (
        len(namespace) > MAX_FIELD
        or not _GITLAB_NAMESPACE.fullmatch(namespace)
        or _CONSECUTIVE_SPECIALS.search(namespace)
    ):
        raise ValueError(
            "namespace: Invalid GitLab username or group/subgroup name. Use letters, digits, '_', '-', '.', "
            "'+' and '/' between groups, no two of '._-' in a row, starting and ending with a letter or digit"
        )
    project = values.get("project", "")
    if not project:
        raise ValueError("project: Specify project name")
    if project.lower().endswith((".git", ".atom")):
        raise ValueError("project: Name ends with .git or .atom")
    if len(project) > MAX_FIELD or not _GITLAB_PROJECT.fullmatch(project) or _CONSECUTIVE_SPECIALS.search(project):
        raise ValueError(
            "project: Invalid project name. Use letters, digits, '_', '-' and '.', no two of '._-' in a row, "
            "starting and ending with a letter or digit"
        )
    filepath = values.get("workflow_filepath", "").strip()
    if not filepath:
        raise ValueError("workflow_filepath: Specify top-level pipeline file path")
    if not filepath.endswith((".yml", ".yaml")):
        raise ValueError("workflow_filepath: Top-level pipeline file path must end with .yml or .yaml")
    if filepath.startswith("/") or filepath.endswith("/"):
        raise ValueError("workflow_filepath: Top-level pipeline file path cannot start or end with /")
    if len(filepath) > MAX_FIELD or not filepath.isprintable() or _extract_filepath(f"//{filepath}@") != filepath:
        raise ValueError("workflow_filepath: Give the pipeline file's path in the repository, as in ci/release.yml")
    environment = values.get("environment", "")
    if environment.isspace():
        environment = ""  # Warehouse's normalisation: whitespace alone is no environment
    if environment and (len(environment) > MAX_FIELD or not _GITLAB_ENVIRONMENT.fullmatch(environment)):
        raise ValueError(
            "environment: Invalid environment name. Use letters, digits, spaces and '-', '_', '/', '$', '{', '}'"
        )
    return GitLabPublisher(namespace, project, filepath, environment)


def _parse_generic(kind: Kind, fields: Mapping[str, str]) -> GenericPublisher:
    values = _fields(kind, fields, ("subject",))
    subject = values.get("subject", "")
    if not subject:
        raise ValueError("subject: Specify the exact 'sub' claim your CI system puts in its ID tokens")
    if len(subject) > MAX_GENERIC or not subject.isprintable():
        raise ValueError(f"subject: Give the 'sub' claim as printable text of at most {MAX_GENERIC} characters")
    claims: list[tuple[str, str]] = []
    for field, value in values.items():
        if field == "subject":
            continue
        name = field.removeprefix(_CLAIM_PREFIX)
        shown = _shown(field)
        if not _CLAIM_NAME.fullmatch(name):
            raise ValueError(
                f"{shown}: Invalid claim name. Use letters, digits, '_', '.', ':' and '-', at most 64 characters"
            )
        if name in _RESERVED_CLAIMS:
            hint = "set it as the subject" if name == "sub" else "the gateway checks it itself; remove it"
            raise ValueError(f"{shown}: The claim {name!r} cannot be configured: {hint}")
        if not value or len(value) > MAX_GENERIC or not value.isprintable():
            raise ValueError(
                f"{shown}: Give the claim's exact value as printable text of at most {MAX_GENERIC} characters"
            )
        claims.append((name, value))
    return GenericPublisher(subject, tuple(sorted(claims)))


_CLASSES: dict[Kind, type[object]] = {
    "github": GitHubPublisher,
    "forgejo": GitHubPublisher,
    "gitlab": GitLabPublisher,
    "generic": GenericPublisher,
}

_PARSERS: dict[str, Callable[[Kind, Mapping[str, str]], Publisher]] = {
    "github": _parse_github,
    "forgejo": _parse_github,
    "gitlab": _parse_gitlab,
    "generic": _parse_generic,
}


def _fields(kind: Kind, fields: Mapping[str, str], allowed: Sequence[str]) -> dict[str, str]:
    """`fields`, refused if it names a field this kind does not have (a generic publisher's `claim.NAME`
    aside) or holds anything but text."""
    generic = kind == "generic"
    for name, value in fields.items():
        if name not in allowed and not (generic and name.startswith(_CLAIM_PREFIX)):
            others = " and claim.NAME fields" if generic else ""
            raise ValueError(
                f"{_shown(name)}: Not a field of a {kind} publisher; give only {', '.join(allowed)}{others}"
            )
        if not isinstance(value, str):
            raise ValueError(f"{_shown(name)}: Give this field as text")
    return dict(fields)


# -- matching: claims against publishers ------------------------------------------------------------------


def check(kind: Kind, publisher: Publisher, claims: Mapping[str, Any], *, issuer_url: str) -> str | None:
    """None when `claims` (from a token `issuer_url` issued) satisfy every rule of `publisher`; otherwise
    the first failure, in Warehouse's words: "Missing claim 'ref'", "Check failed for required claim
    'repository_owner_id'", "Publishing from a workflow invoked via 'pull_request_target' is not
    supported."…"""
    _of_kind(kind, publisher)
    failure = _token_failure(kind, claims, issuer_url)
    if failure is not None:
        return failure
    rule = _rule_failure(kind, publisher, claims, issuer_url)
    return None if rule is None else rule[1]


def find(
    kind: Kind, candidates: Sequence[tuple[str, Publisher]], claims: Mapping[str, Any], *, issuer_url: str
) -> tuple[str, Publisher] | str:
    """The `(publisher_id, publisher)` among `candidates` (all registered against the issuer at
    `issuer_url`) whose every rule `claims` satisfy, the most specific first: one with an environment
    before one without (Warehouse's preference), a generic one with more claim equalities before one with
    fewer, then the candidates' order.

    Otherwise the failure to show the CI job: a claim missing from the token, or the failing rule of the
    candidate for the same repository (project, subject) that the claims came closest to satisfying, or
    `NOT_FOUND` when no candidate is for that repository. A candidate for another repository is never
    described, so a token from one repository learns nothing of another's publishers.
    """
    for _, publisher in candidates:
        _of_kind(kind, publisher)
    failure = _token_failure(kind, claims, issuer_url) or _lookup_failure(kind, claims)
    if failure is not None:
        return failure
    matches: list[tuple[str, Publisher]] = []
    closest: tuple[int, str] | None = None
    for candidate in candidates:
        rule = _rule_failure(kind, candidate[1], claims, issuer_url)
        if rule is None:
            matches.append(candidate)
        elif _names_it(candidate[1], claims) and (closest is None or rule[0] > closest[0]):
            closest = rule
    if matches:
        return min(matches, key=lambda match: -_specificity(match[1]))
    return NOT_FOUND if closest is None else closest[1]


def run_claims(kind: Kind, claims: Mapping[str, Any]) -> dict[str, str]:
    """What identifies the CI run, for the audit trail: `ref`, `sha` and `repository` (GitLab: `ref_path`,
    `sha`, `project_path`; generic: `sub`), each at most `MAX_SHOWN` printable characters ("" if absent)."""
    names = {
        "github": ("ref", "sha", "repository"),
        "forgejo": ("ref", "sha", "repository"),
        "gitlab": ("ref_path", "sha", "project_path"),
        "generic": ("sub",),
    }[kind]
    return {name: _shown(_text(claims, name) or "") for name in names}


def _token_failure(kind: Kind, claims: Mapping[str, Any], issuer_url: str) -> str | None:
    """What is wrong with the token whatever the publisher: another issuer (Warehouse's `find_publisher`),
    a required claim missing (its `check_claims_existence`)."""
    if claims.get("iss") != issuer_url:
        return f"JWT issuer {_shown(_text(claims, 'iss') or '')!r} does not match expected issuer {issuer_url!r}"
    required = _REQUIRED[kind]
    if kind in _WORKFLOW_DIRS:
        required = (*required[:3], _workflow_claim(kind, claims), *required[3:])
    for name in required:
        if claims.get(name) is None:
            return f"Missing claim {name!r}"
    return None


def _lookup_failure(kind: Kind, claims: Mapping[str, Any]) -> str | None:
    """A workflow ref that names no workflow file: Warehouse's `lookup_by_claims` refuses it before it looks
    for publishers (a publisher's own rules refuse it too, as a mismatch)."""
    if kind in _WORKFLOW_DIRS and _extract_filename(_text(claims, _workflow_claim(kind, claims)) or "") is None:
        return NO_WORKFLOW
    if kind == "gitlab" and _extract_filepath(_text(claims, "ci_config_ref_uri") or "") is None:
        return NO_WORKFLOW
    return None


def _rule_failure(
    kind: Kind, publisher: Publisher, claims: Mapping[str, Any], issuer_url: str
) -> tuple[int, str] | None:
    """The first rule of `publisher` that `claims` fail, as (its position among the publisher's rules,
    the failure): a later position came closer."""
    if kind in _WORKFLOW_DIRS:
        return _github_failure(kind, _expect(GitHubPublisher, kind, publisher), claims)
    if kind == "gitlab":
        return _gitlab_failure(_expect(GitLabPublisher, kind, publisher), claims, issuer_url)
    return _generic_failure(_expect(GenericPublisher, kind, publisher), claims)


def _github_failure(kind: Kind, publisher: GitHubPublisher, claims: Mapping[str, Any]) -> tuple[int, str] | None:
    """`warehouse/oidc/models/github.py`: `repository` case-insensitive, `repository_owner` and
    `repository_owner_id` exact, `job_workflow_ref` the configured workflow at the token's `ref` or `sha`,
    `event_name` not `pull_request_target`, `environment` (case-insensitive) only when configured."""
    repository = f"{publisher.repository_owner}/{publisher.repository_name}"
    if not _same_name(_text(claims, "repository") or "", repository):
        return 0, _check_failed("repository")
    if _text(claims, "repository_owner") != publisher.repository_owner:
        return 1, _check_failed("repository_owner")
    if _text(claims, "repository_owner_id") != publisher.repository_owner_id:
        return 2, _check_failed("repository_owner_id")
    name = _workflow_claim(kind, claims)
    workflow_ref = _text(claims, name) or ""
    if not workflow_ref:
        return 3, f"The {name} claim is empty"
    ref, sha = _text(claims, "ref"), _text(claims, "sha")
    if not (ref or sha):
        return 3, "The ref and sha claims are empty"
    workflows = [f"{repository}/{directory}/{publisher.workflow_filename}" for directory in _WORKFLOW_DIRS[kind]]
    if not _ref_matches(workflow_ref, workflows, (ref, sha), len(repository)) or (
        _extract_filename(workflow_ref) != publisher.workflow_filename
    ):
        return 3, _mismatch(name, workflows, (ref, sha), workflow_ref)
    if _text(claims, "event_name") == "pull_request_target":
        return 4, PULL_REQUEST_TARGET
    if publisher.environment:
        environment = _text(claims, "environment")
        if not environment or environment.lower() != publisher.environment.lower():
            return 5, "Check failed for optional claim 'environment'"
    return None


def _gitlab_failure(publisher: GitLabPublisher, claims: Mapping[str, Any], issuer_url: str) -> tuple[int, str] | None:
    """`warehouse/oidc/models/gitlab.py`: the `NAMESPACE/PROJECT` part of `sub` and `project_path`
    case-insensitive, `ci_config_ref_uri` the configured pipeline file at the token's `ref_path` or `sha`
    (both required), `environment` exact and only when configured."""
    project_path = f"{publisher.namespace}/{publisher.project}"
    components = (_text(claims, "sub") or "").split(":")
    if (
        len(components) < 2
        or not all(components[:2])
        or not _same_name(":".join(components[:2]), "project_path:" + project_path)
    ):
        return 0, _check_failed("sub")
    if not _same_name(_text(claims, "project_path") or "", project_path):
        return 1, _check_failed("project_path")
    config_ref = _text(claims, "ci_config_ref_uri") or ""
    if not config_ref:
        return 2, "The ci_config_ref_uri claim is empty"
    ref_path, sha = _text(claims, "ref_path"), _text(claims, "sha")
    if not (ref_path and sha):
        return 2, "The ref_path and sha claims are empty"
    project = f"{_issuer_host(issuer_url)}/{project_path}"
    pipelines = [f"{project}//{publisher.workflow_filepath}"]
    if not _ref_matches(config_ref, pipelines, (ref_path, sha), len(project)) or (
        _extract_filepath(config_ref) != publisher.workflow_filepath
    ):
        return 2, _mismatch("ci_config_ref_uri", pipelines, (ref_path, sha), config_ref)
    if publisher.environment and _text(claims, "environment") != publisher.environment:
        return 3, "Check failed for optional claim 'environment'"
    return None


def _generic_failure(publisher: GenericPublisher, claims: Mapping[str, Any]) -> tuple[int, str] | None:
    if _text(claims, "sub") != publisher.subject:
        return 0, _check_failed("sub")
    for position, (name, value) in enumerate(publisher.claims, start=1):
        if claims.get(name) is None:
            return position, f"Missing claim {name!r}"
        if _text(claims, name) != value:
            return position, _check_failed(name)
    return None


def _names_it(publisher: Publisher, claims: Mapping[str, Any]) -> bool:
    """Whether the claims come from the repository (project, subject) `publisher` is for, so that its
    failure may be shown to them."""
    if isinstance(publisher, GitHubPublisher):
        repository = f"{publisher.repository_owner}/{publisher.repository_name}"
        return _same_name(_text(claims, "repository") or "", repository)
    if isinstance(publisher, GitLabPublisher):
        return _same_name(_text(claims, "project_path") or "", f"{publisher.namespace}/{publisher.project}")
    return _text(claims, "sub") == publisher.subject


def _specificity(publisher: Publisher) -> int:
    if isinstance(publisher, GenericPublisher):
        return len(publisher.claims)
    return 1 if publisher.environment else 0


def _ref_matches(claim: str, workflows: Sequence[str], refs: Sequence[str | None], names: int) -> bool:
    """Whether `claim` is one of the workflows at one of the refs, its first `names` characters (the
    host, owner and repository, which GitHub and GitLab do not tell apart by case) in any case, the rest
    (the file's path and the ref, which they do) exactly."""
    return any(
        len(claim) == len(expected)
        and _same_name(claim[:names], expected[:names])
        and claim[names:] == expected[names:]
        for expected in (f"{workflow}@{ref}" for workflow in workflows for ref in refs if ref)
    )


def _mismatch(name: str, workflows: Sequence[str], refs: Sequence[str | None], claim: str) -> str:
    """Warehouse's "does not match" text, each claim in it shown within bounds."""
    expecting = sorted({f"{workflow}@{_shown(ref)}" for workflow in workflows for ref in refs if ref})
    return f"The {name} claim does not match, expecting one of {expecting!r}, got {_shown(claim)!r}"


def _check_failed(name: str) -> str:
    return f"Check failed for required claim {name!r}"


def _workflow_claim(kind: Kind, claims: Mapping[str, Any]) -> str:
    """The claim naming the job's workflow: GitHub's `job_workflow_ref`. Forgejo's documentation lists
    `workflow_ref` only; a Forgejo that sends `job_workflow_ref` too is judged on that, as GitHub is."""
    if kind == "github" or claims.get("job_workflow_ref") is not None:
        return "job_workflow_ref"
    return "workflow_ref"


def _extract_filename(workflow_ref: str) -> str | None:
    match = _WORKFLOW_FILENAME.search(workflow_ref)
    return None if match is None else match.group(0)


def _extract_filepath(config_ref: str) -> str | None:
    match = _WORKFLOW_FILEPATH.search(config_ref)
    return None if match is None else match.group(0)


def _issuer_host(issuer_url: str) -> str:
    """What GitLab writes before the project in `ci_config_ref_uri`: the issuer without its scheme (as
    Warehouse's `issuer_url.removeprefix("https://")`)."""
    return issuer_url.removeprefix("https://").removeprefix("http://").rstrip("/")


def _same_name(claim: str, configured: str) -> bool:
    """Equal but for the case of ASCII letters (the names are ASCII: no Unicode case folding lets another
    name pass, as "K" (Kelvin) would for "k")."""
    return claim.isascii() and configured.isascii() and claim.lower() == configured.lower()


def _text(claims: Mapping[str, Any], name: str) -> str | None:
    """A claim as text: a string, or an integer's or boolean's JSON spelling (issuers differ on whether ids
    are numbers); None for anything else, absent included."""
    value = claims.get(name)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    return None


def _shown(value: str) -> str:
    """At most `MAX_SHOWN` characters of `value` with every non-printable character removed: safe to put
    in a one-line message."""
    printable = "".join(ch for ch in value if ch.isprintable())
    return printable if len(printable) <= MAX_SHOWN else printable[:MAX_SHOWN] + "…"


_P = TypeVar("_P", GitHubPublisher, GitLabPublisher, GenericPublisher)


def _of_kind(kind: Kind, publisher: Publisher) -> None:
    """Refuse a publisher of another kind: a caller's mistake, never the user's."""
    if not isinstance(publisher, _CLASSES[kind]):
        raise TypeError(f"a {kind} publisher is a {_CLASSES[kind].__name__}, not a {type(publisher).__name__}")


def _expect(cls: type[_P], kind: Kind, publisher: Publisher) -> _P:
    if not isinstance(publisher, cls):
        raise TypeError(f"a {kind} publisher is a {cls.__name__}, not a {type(publisher).__name__}")
    return publisher
