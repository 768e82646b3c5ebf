"""gateway.oidc.claims: publishers as configured, and Warehouse's rules for the claims that match them.

Most cases are Warehouse's own (tests/unit/oidc/models/test_github.py, test_gitlab.py and
tests/unit/oidc/forms/test_github.py, test_gitlab.py at pypi/warehouse 6b62157), run through this module's
public functions: a case Warehouse gives one check function is here a whole claim set that differs from a
matching one in that claim. Where the outcome differs from Warehouse's, the case says why.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gateway.oidc.claims import (
    MAX_SHOWN,
    NO_WORKFLOW,
    NOT_FOUND,
    PULL_REQUEST_TARGET,
    GenericPublisher,
    GitHubPublisher,
    GitLabPublisher,
    Kind,
    Publisher,
    check,
    describe,
    find,
    parse_publisher,
    publisher_fields,
    run_claims,
)

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITLAB_ISSUER = "https://gitlab.com"
FORGEJO_ISSUER = "https://codeberg.org/api/actions"
GENERIC_ISSUER = "https://ci.example.com"

GITHUB = GitHubPublisher("foo", "1234", "bar", "baz.yml")
GITLAB = GitLabPublisher("foo", "bar", "workflows/baz.yml")


def with_changes(claims: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`claims` with `changes` applied, a None removing the claim (Warehouse treats a null claim as missing)."""
    claims = claims | changes
    return {name: value for name, value in claims.items() if value is not None}


def github_claims(**changes: Any) -> dict[str, Any]:
    """A token from foo/bar's baz.yml on main, as GitHub issues it."""
    claims = {
        "iss": GITHUB_ISSUER,
        "aud": "upload-gateway",
        "iat": 1767213499,
        "exp": 1767217099,
        "jti": "0b1c2d3e-0000-4000-8000-000000000001",
        "sub": "repo:foo/bar:ref:refs/heads/main",
        "repository": "foo/bar",
        "repository_owner": "foo",
        "repository_owner_id": "1234",
        "repository_id": "5678",
        "job_workflow_ref": "foo/bar/.github/workflows/baz.yml@refs/heads/main",
        "workflow_ref": "foo/bar/.github/workflows/baz.yml@refs/heads/main",
        "ref": "refs/heads/main",
        "sha": "somesha",
        "event_name": "push",
    }
    return with_changes(claims, changes)


def gitlab_claims(**changes: Any) -> dict[str, Any]:
    """A pipeline of foo/bar run from workflows/baz.yml on main, as gitlab.com issues its token."""
    claims = {
        "iss": GITLAB_ISSUER,
        "aud": "upload-gateway",
        "jti": "0b1c2d3e-0000-4000-8000-000000000002",
        "sub": "project_path:foo/bar:ref_type:branch:ref:main",
        "project_path": "foo/bar",
        "namespace_path": "foo",
        "ci_config_ref_uri": "gitlab.com/foo/bar//workflows/baz.yml@refs/heads/main",
        "ref_path": "refs/heads/main",
        "ref": "main",
        "sha": "somesha",
    }
    return with_changes(claims, changes)


def forgejo_claims(**changes: Any) -> dict[str, Any]:
    """Forgejo's documented example token (docs/user/actions/security-openid-connect.md), with the immutable
    ids Forgejo #12355 added and a `jti`."""
    claims = {
        "actor": "user1",
        "aud": "upload-gateway",
        "event_name": "push",
        "exp": 1767217099,
        "iat": 1767213499,
        "iss": FORGEJO_ISSUER,
        "jti": "0b1c2d3e-0000-4000-8000-000000000003",
        "nbf": 1767213499,
        "ref": "refs/heads/master",
        "ref_protected": "false",
        "ref_type": "branch",
        "repository": "user1/testing",
        "repository_id": "456789",
        "repository_owner": "user1",
        "repository_owner_id": "123456",
        "run_attempt": "1",
        "run_id": "43",
        "run_number": "43",
        "sha": "76cb2978acb72029ac23277a6192eea1707c6a2c",
        "sub": "repo:user1-123456/testing-456789:ref:refs/heads/master",
        "workflow": "test.yml",
        "workflow_ref": "user1/testing/.forgejo/workflows/test.yml@refs/heads/master",
    }
    return with_changes(claims, changes)


FORGEJO = GitHubPublisher("user1", "123456", "testing", "test.yml")


def github_check(publisher: GitHubPublisher = GITHUB, **changes: Any) -> str | None:
    return check("github", publisher, github_claims(**changes), issuer_url=GITHUB_ISSUER)


def gitlab_check(publisher: GitLabPublisher = GITLAB, **changes: Any) -> str | None:
    return check("gitlab", publisher, gitlab_claims(**changes), issuer_url=GITLAB_ISSUER)


def failed(claim: str) -> str:
    return f"Check failed for required claim {claim!r}"


# -- GitHub: Warehouse's tests/unit/oidc/models/test_github.py --------------------------------------------


@pytest.mark.parametrize(
    ("workflow_ref", "expected"),
    [
        # Well-formed workflow refs, including exceedingly obnoxious ones
        # with `@` or extra suffixes or `git` refs that look like workflows.
        ("foo/bar/.github/workflows/basic.yml@refs/heads/main", "basic.yml"),
        ("foo/bar/.github/workflows/basic.yaml@refs/heads/main", "basic.yaml"),
        ("foo/bar/.github/workflows/has-dash.yml@refs/heads/main", "has-dash.yml"),
        ("foo/bar/.github/workflows/has--dashes.yml@refs/heads/main", "has--dashes.yml"),
        ("foo/bar/.github/workflows/has--dashes-.yml@refs/heads/main", "has--dashes-.yml"),
        ("foo/bar/.github/workflows/has.period.yml@refs/heads/main", "has.period.yml"),
        ("foo/bar/.github/workflows/has..periods.yml@refs/heads/main", "has..periods.yml"),
        ("foo/bar/.github/workflows/has..periods..yml@refs/heads/main", "has..periods..yml"),
        ("foo/bar/.github/workflows/has_underscore.yml@refs/heads/main", "has_underscore.yml"),
        ("foo/bar/.github/workflows/nested@evil.yml@refs/heads/main", "nested@evil.yml"),
        ("foo/bar/.github/workflows/nested.yml@evil.yml@refs/heads/main", "nested.yml@evil.yml"),
        ("foo/bar/.github/workflows/extra@nested.yml@evil.yml@refs/heads/main", "extra@nested.yml@evil.yml"),
        (
            "foo/bar/.github/workflows/extra.yml@nested.yml@evil.yml@refs/heads/main",
            "extra.yml@nested.yml@evil.yml",
        ),
        ("foo/bar/.github/workflows/basic.yml@refs/heads/misleading@branch.yml", "basic.yml"),
        ("foo/bar/.github/workflows/basic.yml@refs/heads/bad@branch@twomatches.yml", "basic.yml"),
        ("foo/bar/.github/workflows/foo.yml.yml@refs/heads/main", "foo.yml.yml"),
        ("foo/bar/.github/workflows/foo.yml.foo.yml@refs/heads/main", "foo.yml.foo.yml"),
        # Malformed workflow refs.
        ("foo/bar/.github/workflows/basic.wrongsuffix@refs/heads/main", None),
        ("foo/bar/.github/workflows/@refs/heads/main", None),
        ("foo/bar/.github/workflows/nosuffix@refs/heads/main", None),
        ("foo/bar/.github/workflows/.yml@refs/heads/main", None),
        ("foo/bar/.github/workflows/.yaml@refs/heads/main", None),
        ("foo/bar/.github/workflows/main.yml", None),
    ],
)
@pytest.mark.parametrize("environment", [None, "some_environment"])
def test_the_workflow_file_is_read_from_job_workflow_ref(
    workflow_ref: str, expected: str | None, environment: str | None
) -> None:
    """Warehouse's test_extract_workflow_filename and test_lookup_fails_invalid_workflow_ref: the file is
    what the publisher must name; a ref that names none is refused before any publisher is looked at."""
    prefix = "foo/bar/.github/workflows/"
    publisher = replace(GITHUB, workflow_filename=expected or "basic.yml")
    ref = workflow_ref.removeprefix(f"{prefix}{expected}@") if expected else "refs/heads/main"
    claims = github_claims(job_workflow_ref=workflow_ref, ref=ref, environment=environment)
    found = find("github", [("p1", publisher)], claims, issuer_url=GITHUB_ISSUER)
    assert found == (("p1", publisher) if expected else NO_WORKFLOW)


@pytest.mark.parametrize("environment", ["", "some_environment"])
@pytest.mark.parametrize(
    ("workflow_a", "workflow_b"), [("release-pypi.yml", "release_pypi.yml"), ("release%pypi.yml", "release-pypi.yml")]
)
def test_workflow_files_are_compared_exactly(environment: str, workflow_a: str, workflow_b: str) -> None:
    """Warehouse's test_lookup_escapes: no pattern matching (SQL's LIKE there) confuses similar names."""
    candidates: list[tuple[str, Publisher]] = [
        ("a", replace(GITHUB, workflow_filename=workflow_a, environment=environment)),
        ("b", replace(GITHUB, workflow_filename=workflow_b, environment=environment)),
    ]
    for publisher_id, workflow in (("a", workflow_a), ("b", workflow_b)):
        claims = github_claims(
            job_workflow_ref=f"foo/bar/.github/workflows/{workflow}@refs/heads/main", environment=environment or None
        )
        found = find("github", candidates, claims, issuer_url=GITHUB_ISSUER)
        assert isinstance(found, tuple) and found[0] == publisher_id


def test_no_publisher_for_the_repository_is_not_found() -> None:
    other = replace(GITHUB, repository_owner="other", repository_name="project")
    assert find("github", [], github_claims(), issuer_url=GITHUB_ISSUER) == NOT_FOUND
    assert find("github", [("p1", other)], github_claims(), issuer_url=GITHUB_ISSUER) == NOT_FOUND


def test_the_closest_publisher_says_which_claim_failed() -> None:
    """Warehouse's test_lookup_no_matching_publishers answers "Publisher with matching claims was not
    found" for a publisher of the repository whose environment differs; here the CI job is told which
    claim failed (the interface's "failing claim of the closest candidate"), since that publisher is for
    the very repository the token comes from."""
    publisher = replace(GITHUB, environment="environment")
    claims = github_claims(environment="another_environment")
    assert find("github", [("p1", publisher)], claims, issuer_url=GITHUB_ISSUER) == (
        "Check failed for optional claim 'environment'"
    )


@pytest.mark.parametrize(
    "missing",
    ["repository", "repository_owner", "repository_owner_id", "job_workflow_ref", "jti", "event_name", "ref", "sha"],
)
def test_a_missing_required_claim_is_named(missing: str) -> None:
    """Warehouse's test_github_publisher_missing_claims: every required claim, verifiable or not."""
    assert github_check(**{missing: None}) == f"Missing claim {missing!r}"
    assert find("github", [("p1", GITHUB)], github_claims(**{missing: None}), issuer_url=GITHUB_ISSUER) == (
        f"Missing claim {missing!r}"
    )


def test_a_configured_environment_must_be_in_the_token() -> None:
    """Warehouse's test_github_publisher_missing_optional_claims."""
    assert github_check(replace(GITHUB, environment="some-environment")) == (
        "Check failed for optional claim 'environment'"
    )


@pytest.mark.parametrize("environment", ["", "some-environment"])
@pytest.mark.parametrize("environment_claim", [True, False])
def test_github_publisher_verifies(environment: str, environment_claim: bool) -> None:
    """Warehouse's test_github_publisher_verifies: with and without the optional claim; a publisher with
    no environment takes any, one with an environment needs it."""
    claims = {"environment": "Some-Environment"} if environment_claim else {}
    expected = None if environment_claim or not environment else "Check failed for optional claim 'environment'"
    assert github_check(replace(GITHUB, environment=environment), **claims) == expected


@pytest.mark.parametrize(
    ("truth", "claim", "valid"),
    [
        # invalid: claim should never be empty or missing
        ("", None, False),
        ("foo", None, False),
        ("", "", False),
        ("foo", "", False),
        # valid: exact and case-insensitive matches
        ("foo", "foo", True),
        ("Foo", "foo", True),
        ("Foo", "Foo", True),
        ("foo", "Foo", True),
        ("FOO", "foo", True),
        ("foo", "FOO", True),
    ],
)
def test_the_repository_is_compared_without_case(truth: str, claim: str | None, valid: bool) -> None:
    """Warehouse's test_check_repository, on the repository's name (`repository` is OWNER/NAME; the owner
    claim has its own, exact rule). GitHub's ref claims spell the name as GitHub does, like `repository`."""
    publisher = replace(GITHUB, repository_name=truth)
    spelled = f"foo/{claim}" if claim else claim
    changes = {"repository": spelled, "job_workflow_ref": f"{spelled}/.github/workflows/baz.yml@refs/heads/main"}
    expected = "Missing claim 'repository'" if claim is None else None if valid else failed("repository")
    assert github_check(publisher, **changes) == expected


def test_the_repository_owner_is_compared_exactly() -> None:
    """`repository_owner` is exact (Warehouse's `str.__eq__`): the owner is typed as GitHub spells it."""
    assert github_check(replace(GITHUB, repository_owner="Foo"), repository="Foo/bar") == failed("repository_owner")
    assert github_check(repository_owner="FOO") == failed("repository_owner")


def test_the_owner_id_is_compared_exactly() -> None:
    """The resurrection defence: the owner's name taken over by a new account keeps the name, not the id."""
    assert github_check(repository_owner_id="12345") == failed("repository_owner_id")
    assert github_check(repository_owner_id=" 1234") == failed("repository_owner_id")
    assert github_check(repository_owner_id=1234) is None  # an issuer that sends ids as numbers
    assert github_check(repository_owner_id=["1234"]) == failed("repository_owner_id")


def test_names_differing_by_unicode_case_folding_are_not_equal() -> None:
    """ "K" (KELVIN SIGN) lower-cases to "k": a non-ASCII name never passes for an ASCII one."""
    publisher = replace(GITHUB, repository_name="kit")
    assert github_check(publisher, repository="foo/\u212ait") == failed("repository")


def test_pull_request_target_is_refused() -> None:
    """Warehouse's test_check_event_name_invalid."""
    assert github_check(event_name="pull_request_target") == PULL_REQUEST_TARGET
    assert github_check(event_name="workflow_dispatch") is None


def _workflow_ref_mismatch(got: str) -> str:
    return (
        "The job_workflow_ref claim does not match, expecting one of "
        "['foo/bar/.github/workflows/baz.yml@notrailingslash', 'foo/bar/.github/workflows/baz.yml@somesha'], "
        f"got {got!r}"
    )


@pytest.mark.parametrize(
    ("claim", "ref", "sha", "expected"),
    [
        # okay: workflow name, followed by a nonempty ref
        ("foo/bar/.github/workflows/baz.yml@refs/tags/v0.0.1", "refs/tags/v0.0.1", "somesha", None),
        ("foo/bar/.github/workflows/baz.yml@refs/pulls/6", "refs/pulls/6", "somesha", None),
        ("foo/bar/.github/workflows/baz.yml@refs/heads/main", "refs/heads/main", "somesha", None),
        ("foo/bar/.github/workflows/baz.yml@notrailingslash", "notrailingslash", "somesha", None),
        # okay: workflow name, followed by a nonempty sha
        ("foo/bar/.github/workflows/baz.yml@somesha", "someref", "somesha", None),
        # Warehouse's check passes with no `ref` at all; its `check_claims_existence` refuses that first.
        ("foo/bar/.github/workflows/baz.yml@somesha", None, "somesha", "Missing claim 'ref'"),
        ("foo/bar/.github/workflows/baz.yml@somesha", "", "somesha", None),
        # bad: both ref and sha are missing
        ("foo/bar/.github/workflows/baz.yml@missing", None, None, "Missing claim 'ref'"),
        ("foo/bar/.github/workflows/baz.yml@missing", "", "", "The ref and sha claims are empty"),
        # bad: workflow name with various attempted impersonations on the ref
        (
            "foo/bar/.github/workflows/baz.yml@fake.yml@notrailingslash",
            "somesha",
            "notrailingslash",
            _workflow_ref_mismatch("foo/bar/.github/workflows/baz.yml@fake.yml@notrailingslash"),
        ),
        (
            "foo/bar/.github/workflows/baz.yml@fake.yml@refs/pulls/6",
            "somesha",
            "refs/pulls/6",
            "The job_workflow_ref claim does not match, expecting one of "
            "['foo/bar/.github/workflows/baz.yml@refs/pulls/6', 'foo/bar/.github/workflows/baz.yml@somesha'], "
            "got 'foo/bar/.github/workflows/baz.yml@fake.yml@refs/pulls/6'",
        ),
        # bad: missing tail or workflow name or otherwise partial
        (
            "foo/bar/.github/workflows/baz.yml@",
            "somesha",
            "notrailingslash",
            _workflow_ref_mismatch("foo/bar/.github/workflows/baz.yml@"),
        ),
        (
            "foo/bar/.github/workflows/@",
            "somesha",
            "notrailingslash",
            _workflow_ref_mismatch("foo/bar/.github/workflows/@"),
        ),
        (
            "foo/bar/.github/workflows/",
            "somesha",
            "notrailingslash",
            _workflow_ref_mismatch("foo/bar/.github/workflows/"),
        ),
        ("baz.yml", "somesha", "notrailingslash", _workflow_ref_mismatch("baz.yml")),
        (
            "foo/bar/.github/workflows/baz.yml@malicious.yml@",
            "somesha",
            "notrailingslash",
            _workflow_ref_mismatch("foo/bar/.github/workflows/baz.yml@malicious.yml@"),
        ),
        (
            "foo/bar/.github/workflows/baz.yml@@",
            "somesha",
            "notrailingslash",
            _workflow_ref_mismatch("foo/bar/.github/workflows/baz.yml@@"),
        ),
        ("", "", "", "The job_workflow_ref claim is empty"),
    ],
)
def test_job_workflow_ref(claim: str, ref: str | None, sha: str | None, expected: str | None) -> None:
    """Warehouse's test_github_publisher_job_workflow_ref, on check(): the ref's tail is `ref` or `sha`."""
    assert github_check(job_workflow_ref=claim, ref=ref, sha=sha) == expected


@pytest.mark.parametrize(
    ("truth", "claim", "valid"),
    [
        ("", None, True),
        ("", "", True),
        ("", "some-environment", True),
        ("some-environment", "some-environment", True),
        ("some-environment", "sOmE-eNvIrOnMeNt", True),
        ("some-environment", None, False),
        ("some-environment", "some-other-environment", False),
    ],
)
def test_github_environment(truth: str, claim: str | None, valid: bool) -> None:
    """Warehouse's test_github_publisher_environment_claim: optional, case-insensitive."""
    expected = None if valid else "Check failed for optional claim 'environment'"
    assert github_check(replace(GITHUB, environment=truth), environment=claim) == expected


def test_a_ref_holding_at_signs_is_read_as_warehouse_reads_it() -> None:
    """`baz.yml@x.yml@refs/heads/main` is workflow `baz.yml@x.yml` at `refs/heads/main` to Warehouse's
    lookup (the longest file name), even with a `ref` of `x.yml@refs/heads/main` that would make it `baz.yml`:
    the file the claim names must be the publisher's, whatever the tail."""
    claim = "foo/bar/.github/workflows/baz.yml@x.yml@refs/heads/main"
    mismatch = github_check(job_workflow_ref=claim, ref="x.yml@refs/heads/main")
    assert mismatch is not None and mismatch.startswith("The job_workflow_ref claim does not match")
    assert github_check(replace(GITHUB, workflow_filename="baz.yml@x.yml"), job_workflow_ref=claim) is None
    config = "gitlab.com/foo/bar//workflows/baz.yml@x.yml@refs/heads/main"
    mismatch = gitlab_check(ci_config_ref_uri=config, ref_path="x.yml@refs/heads/main")
    assert mismatch is not None and mismatch.startswith("The ci_config_ref_uri claim does not match")
    assert gitlab_check(replace(GITLAB, workflow_filepath="workflows/baz.yml@x.yml"), ci_config_ref_uri=config) is None


def test_the_repository_name_in_any_case_matches_throughout() -> None:
    """The publisher typed "Bar" for GitHub's "bar": `repository` and the owner/name part of
    `job_workflow_ref` compare without case. (Warehouse's lookup and `job_workflow_ref` check compare it
    exactly, so such a publisher never matches there, although its `repository` rule says names are
    case-insensitive.) The workflow's path and the ref stay exact."""
    assert github_check(replace(GITHUB, repository_name="Bar")) is None
    mismatch = github_check(replace(GITHUB, workflow_filename="Baz.yml"))
    assert mismatch is not None and mismatch.startswith("The job_workflow_ref claim does not match")
    mismatch = github_check(job_workflow_ref="foo/bar/.github/workflows/baz.yml@refs/heads/MAIN")
    assert mismatch is not None and mismatch.startswith("The job_workflow_ref claim does not match")


def test_a_publisher_with_an_environment_is_preferred() -> None:
    """Warehouse's `_get_publisher_for_environment`, whatever the candidates' order."""
    anywhere = ("any", GITHUB)
    pypi = ("pypi", replace(GITHUB, environment="pypi"))
    for candidates in ([anywhere, pypi], [pypi, anywhere]):
        assert find("github", candidates, github_claims(environment="PyPI"), issuer_url=GITHUB_ISSUER) == pypi
        assert find("github", candidates, github_claims(environment="other"), issuer_url=GITHUB_ISSUER) == anywhere
        assert find("github", candidates, github_claims(), issuer_url=GITHUB_ISSUER) == anywhere


def test_only_candidates_of_the_repository_are_described() -> None:
    """The closest candidate of the token's repository speaks; another repository's publisher, however close
    (same owner and id, same workflow), is "not found"."""
    wrong_id = ("id", replace(GITHUB, repository_owner_id="999"))
    wrong_workflow = ("file", replace(GITHUB, workflow_filename="release.yml"))
    other_repository = ("other", replace(GITHUB, repository_name="elsewhere"))
    claims = github_claims()
    found = find("github", [wrong_id, wrong_workflow, other_repository], claims, issuer_url=GITHUB_ISSUER)
    assert isinstance(found, str) and found.startswith("The job_workflow_ref claim does not match")
    assert "release.yml" in found
    assert find("github", [wrong_id, other_repository], claims, issuer_url=GITHUB_ISSUER) == failed(
        "repository_owner_id"
    )
    assert find("github", [other_repository], claims, issuer_url=GITHUB_ISSUER) == NOT_FOUND


def test_a_token_of_another_issuer_is_refused() -> None:
    """Warehouse's cross-issuer text; the exchange only hands over tokens of the publisher's issuer, so
    this is the second line of that defence."""
    claims = github_claims(iss="https://ghes.example.com/_services/token")
    expected = (
        "JWT issuer 'https://ghes.example.com/_services/token' does not match expected issuer "
        "'https://token.actions.githubusercontent.com'"
    )
    assert check("github", GITHUB, claims, issuer_url=GITHUB_ISSUER) == expected
    assert find("github", [("p1", GITHUB)], claims, issuer_url=GITHUB_ISSUER) == expected


def test_claims_in_a_failure_are_bounded_and_printable() -> None:
    """A ref is any text the token's holder chose: the failure shows at most MAX_SHOWN printable characters
    of it, on one line."""
    hostile = "refs/heads/\x1b[31mred\r\nforged: line\u2028\u202e" + "x" * 5000
    claims = github_claims(ref=hostile, job_workflow_ref=f"foo/bar/.github/workflows/baz.yml@{hostile}@")
    failure = check("github", GITHUB, claims, issuer_url=GITHUB_ISSUER)
    assert failure is not None and failure.startswith("The job_workflow_ref claim does not match")
    assert failure.isprintable() and "\x1b" not in failure and "\n" not in failure
    assert "x" * MAX_SHOWN not in failure and len(failure) < 4 * MAX_SHOWN + 200
    issuer = check("github", GITHUB, github_claims(iss="https://evil\x00" + "e" * 900), issuer_url=GITHUB_ISSUER)
    assert issuer is not None and issuer.isprintable() and len(issuer) < MAX_SHOWN + 150


def test_a_publisher_of_another_kind_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        check("gitlab", GITHUB, gitlab_claims(), issuer_url=GITLAB_ISSUER)
    with pytest.raises(TypeError):
        describe("github", GITLAB)


# -- Forgejo: GitHub's rules on Forgejo's claims ------------------------------------------------------------


def forgejo_find(publisher: GitHubPublisher = FORGEJO, **changes: Any) -> tuple[str, Publisher] | str:
    return find("forgejo", [("f1", publisher)], forgejo_claims(**changes), issuer_url=FORGEJO_ISSUER)


def test_forgejos_documented_token_matches() -> None:
    assert forgejo_find() == ("f1", FORGEJO)
    assert check("forgejo", FORGEJO, forgejo_claims(), issuer_url=FORGEJO_ISSUER) is None


@pytest.mark.parametrize(
    ("workflow_ref", "matches"),
    [
        ("user1/testing/.forgejo/workflows/test.yml@refs/heads/master", True),
        ("user1/testing/.github/workflows/test.yml@refs/heads/master", True),  # Forgejo's fallback directory
        ("user1/testing/.gitea/workflows/test.yml@refs/heads/master", False),
        ("user1/testing/.forgejo/workflows/test.yml@76cb2978acb72029ac23277a6192eea1707c6a2c", True),
        ("user1/testing/.forgejo/workflows/other.yml@refs/heads/master", False),
    ],
)
def test_forgejo_workflows_live_in_either_directory(workflow_ref: str, matches: bool) -> None:
    found = forgejo_find(workflow_ref=workflow_ref)
    if matches:
        assert found == ("f1", FORGEJO)
    else:
        assert isinstance(found, str) and found.startswith("The workflow_ref claim does not match")
        assert "user1/testing/.forgejo/workflows/test.yml@refs/heads/master" in found
        assert "user1/testing/.github/workflows/test.yml@refs/heads/master" in found


def test_forgejo_job_workflow_ref_is_read_where_sent() -> None:
    """A Forgejo that sends GitHub's `job_workflow_ref` is judged on it, `workflow_ref` aside."""
    good = "user1/testing/.forgejo/workflows/test.yml@refs/heads/master"
    bad = "user1/testing/.forgejo/workflows/other.yml@refs/heads/master"
    assert forgejo_find(job_workflow_ref=good, workflow_ref=bad) == ("f1", FORGEJO)
    found = forgejo_find(job_workflow_ref=bad, workflow_ref=good)
    assert isinstance(found, str) and found.startswith("The job_workflow_ref claim does not match")


@pytest.mark.parametrize(
    "missing",
    ["repository", "repository_owner", "repository_owner_id", "workflow_ref", "jti", "event_name", "ref", "sha"],
)
def test_forgejo_required_claims(missing: str) -> None:
    """A Forgejo before #12355 sends no `repository_owner_id`: such a token is refused, naming the claim."""
    assert forgejo_find(**{missing: None}) == f"Missing claim {missing!r}"


def test_forgejo_keeps_githubs_rules() -> None:
    assert forgejo_find(event_name="pull_request_target") == PULL_REQUEST_TARGET
    assert forgejo_find(repository_owner_id="1") == failed("repository_owner_id")
    assert forgejo_find(repository="User1/Testing") == ("f1", FORGEJO)
    assert forgejo_find(replace(FORGEJO, environment="pypi")) == "Check failed for optional claim 'environment'"


def test_github_takes_neither_forgejos_directory_nor_its_claim() -> None:
    forgejo_ref = "foo/bar/.forgejo/workflows/baz.yml@refs/heads/main"
    mismatch = github_check(job_workflow_ref=forgejo_ref)
    assert mismatch is not None and mismatch.startswith("The job_workflow_ref claim does not match")
    assert github_check(job_workflow_ref=None) == "Missing claim 'job_workflow_ref'"


# -- GitLab: Warehouse's tests/unit/oidc/models/test_gitlab.py --------------------------------------------


@pytest.mark.parametrize(
    ("ci_config_ref_uri", "expected"),
    [
        # Well-formed `ci_config_ref_uri`s, including obnoxious ones.
        ("gitlab.com/foo/bar//notnested.yml@/some/ref", "notnested.yml"),
        ("gitlab.com/foo/bar//notnested.yaml@/some/ref", "notnested.yaml"),
        ("gitlab.com/foo/bar//basic/basic.yml@/some/ref", "basic/basic.yml"),
        ("gitlab.com/foo/bar//more/nested/example.yml@/some/ref", "more/nested/example.yml"),
        ("gitlab.com/foo/bar//too//many//slashes.yml@/some/ref", "too//many//slashes.yml"),
        ("gitlab.com/foo/bar//has-@.yml@/some/ref", "has-@.yml"),
        ("gitlab.com/foo/bar//foo.bar.yml@/some/ref", "foo.bar.yml"),
        ("gitlab.com/foo/bar//foo.yml.bar.yml@/some/ref", "foo.yml.bar.yml"),
        ("gitlab.com/foo/bar//foo.yml@bar.yml@/some/ref", "foo.yml@bar.yml"),
        ("gitlab.com/foo/bar//@foo.yml@bar.yml@/some/ref", "@foo.yml@bar.yml"),
        ("gitlab.com/foo/bar//@.yml.foo.yml@bar.yml@/some/ref", "@.yml.foo.yml@bar.yml"),
        ("gitlab.com/foo/bar//a.yml@/some/ref", "a.yml"),
        ("gitlab.com/foo/bar//a/b.yml@/some/ref", "a/b.yml"),
        # Custom domain.
        ("gitlab.example.com/foo/bar//example.yml@/some/ref", "example.yml"),
        # Malformed `ci_config_ref_uri`s.
        ("gitlab.com/foo/bar//notnested.wrongsuffix@/some/ref", None),
        ("gitlab.com/foo/bar//@/some/ref", None),
        ("gitlab.com/foo/bar//.yml@/some/ref", None),
        ("gitlab.com/foo/bar//.yaml@/some/ref", None),
        ("gitlab.com/foo/bar//somedir/.yaml@/some/ref", None),
        # Warehouse's test_lookup_fails_invalid_ci_config_ref_uri.
        ("gitlab.com/foo/bar//example/.yml@refs/heads/main", None),
    ],
)
def test_the_pipeline_file_is_read_from_ci_config_ref_uri(ci_config_ref_uri: str, expected: str | None) -> None:
    """Warehouse's test_extract_workflow_filename (GitLab's): the path is what the publisher must name."""
    issuer = "https://" + ci_config_ref_uri.split("/", 1)[0]
    publisher = replace(GITLAB, workflow_filepath=expected or "example.yml")
    claims = gitlab_claims(iss=issuer, ci_config_ref_uri=ci_config_ref_uri, ref_path="/some/ref")
    found = find("gitlab", [("p1", publisher)], claims, issuer_url=issuer)
    assert found == (("p1", publisher) if expected else NO_WORKFLOW)


@pytest.mark.parametrize("claim", ["", "repo", "repo:"])
def test_a_sub_without_a_project_fails(claim: str) -> None:
    """Warehouse's test_check_sub."""
    assert gitlab_check(sub=claim) == failed("sub")


@pytest.mark.parametrize(
    ("configured_namespace", "configured_project", "project_path"),
    [("Foo", "Bar", "foo/bar"), ("foo", "bar", "Foo/Bar")],
)
def test_the_project_path_matches_in_any_case(
    configured_namespace: str, configured_project: str, project_path: str
) -> None:
    """Warehouse's test_lookup_succeeds_with_mixed_case_project_path. Its lookup finds the publisher, but its
    `ci_config_ref_uri` check then compares NAMESPACE/PROJECT exactly; here that part of the claim compares
    without case too, so the publisher is matched, not just found."""
    publisher = GitLabPublisher(configured_namespace, configured_project, ".gitlab-ci.yml")
    claims = gitlab_claims(
        project_path=project_path,
        sub=f"project_path:{project_path}:ref_type:branch:ref:main",
        ci_config_ref_uri="gitlab.com/foo/bar//.gitlab-ci.yml@refs/heads/main",
        environment="some_environment",
    )
    assert find("gitlab", [("p1", publisher)], claims, issuer_url=GITLAB_ISSUER) == ("p1", publisher)


@pytest.mark.parametrize("environment", ["SomeEnvironment", "SOME_ENVIRONMENT"])
def test_a_gitlab_environment_in_capitals_matches_itself(environment: str) -> None:
    """Warehouse's test_lookup_succeeds_with_non_lowercase_environment."""
    publisher = replace(GITLAB, environment=environment)
    found = find("gitlab", [("p1", publisher)], gitlab_claims(environment=environment), issuer_url=GITLAB_ISSUER)
    assert found == ("p1", publisher)


@pytest.mark.parametrize("environment", ["SomeEnvironment", "SOME_ENVIRONMENT"])
def test_a_gitlab_environment_is_case_sensitive(environment: str) -> None:
    """Warehouse's test_lookup_is_case_sensitive_for_environment ("not found" there; the failing claim of
    the project's own publisher here, as for GitHub)."""
    publisher = replace(GITLAB, environment=environment.lower())
    found = find("gitlab", [("p1", publisher)], gitlab_claims(environment=environment), issuer_url=GITLAB_ISSUER)
    assert found == "Check failed for optional claim 'environment'"


@pytest.mark.parametrize("environment", ["", "some_environment"])
@pytest.mark.parametrize(
    ("filepath_a", "filepath_b"),
    [
        ("workflows/release_pypi/ci.yml", "workflows/release-pypi/ci.yml"),
        ("workflows/release%pypi/ci.yml", "workflows/release-pypi/ci.yml"),
    ],
)
def test_pipeline_files_are_compared_exactly(environment: str, filepath_a: str, filepath_b: str) -> None:
    """Warehouse's test_lookup_escapes (GitLab's)."""
    candidates: list[tuple[str, Publisher]] = [
        ("a", replace(GITLAB, workflow_filepath=filepath_a, environment=environment)),
        ("b", replace(GITLAB, workflow_filepath=filepath_b, environment=environment)),
    ]
    for publisher_id, filepath in (("a", filepath_a), ("b", filepath_b)):
        claims = gitlab_claims(
            ci_config_ref_uri=f"gitlab.com/foo/bar//{filepath}@refs/heads/main", environment=environment or None
        )
        found = find("gitlab", candidates, claims, issuer_url=GITLAB_ISSUER)
        assert isinstance(found, tuple) and found[0] == publisher_id


def test_no_gitlab_publisher_is_not_found() -> None:
    """Warehouse's test_lookup_no_matching_publisher."""
    assert find("gitlab", [], gitlab_claims(), issuer_url=GITLAB_ISSUER) == NOT_FOUND
    other = ("p1", replace(GITLAB, project="other"))
    assert find("gitlab", [other], gitlab_claims(), issuer_url=GITLAB_ISSUER) == NOT_FOUND


@pytest.mark.parametrize("missing", ["sub", "project_path", "ci_config_ref_uri", "jti", "ref_path", "sha"])
def test_a_missing_gitlab_claim_is_named(missing: str) -> None:
    """Warehouse's test_gitlab_publisher_missing_claims."""
    assert gitlab_check(**{missing: None}) == f"Missing claim {missing!r}"


def test_a_configured_gitlab_environment_must_be_in_the_token() -> None:
    """Warehouse's test_gitlab_publisher_missing_optional_claims."""
    assert gitlab_check(replace(GITLAB, environment="some-environment")) == (
        "Check failed for optional claim 'environment'"
    )


@pytest.mark.parametrize("environment", ["", "some-environment"])
@pytest.mark.parametrize("environment_claim", [True, False])
def test_gitlab_publisher_verifies(environment: str, environment_claim: bool) -> None:
    """Warehouse's test_gitlab_publisher_verifies."""
    claims = {"environment": "some-environment"} if environment_claim else {}
    expected = None if environment_claim or not environment else "Check failed for optional claim 'environment'"
    assert gitlab_check(replace(GITLAB, environment=environment), **claims) == expected


@pytest.mark.parametrize(
    ("truth", "claim", "valid"),
    [
        # invalid: claim should never be empty or missing
        ("", None, False),
        ("foo/bar", None, False),
        ("", "", False),
        ("foo/bar", "", False),
        # valid: exact and case-insensitive matches
        ("foo/bar", "foo/bar", True),
        ("Foo/bar", "foo/bar", True),
        ("Foo/bar", "Foo/bar", True),
        ("foo/bar", "Foo/bar", True),
        ("FOO/bar", "foo/bar", True),
        ("foo/bar", "FOO/bar", True),
        ("foo/Bar", "foo/bar", True),
        ("foo/Bar", "Foo/Bar", True),
        ("foo/bar", "foo/Bar", True),
        ("foo/BAR", "foo/bar", True),
        ("foo/bar", "foo/BAR", True),
    ],
)
def test_project_path(truth: str, claim: str | None, valid: bool) -> None:
    """Warehouse's test_check_project_path (the other claims spelled as GitLab spells the project)."""
    namespace, _, project = truth.partition("/")
    spelled = claim or "foo/bar"
    changes: dict[str, Any] = {
        "project_path": claim,
        "sub": f"project_path:{spelled}:ref_type:branch:ref:main",
        "ci_config_ref_uri": f"gitlab.com/{spelled}//workflows/baz.yml@refs/heads/main",
    }
    expected = "Missing claim 'project_path'" if claim is None else None if valid else failed("project_path")
    if truth == "" and claim is not None:
        expected = failed("sub")  # no configured project: its `sub` cannot match either
    assert gitlab_check(GitLabPublisher(namespace, project, "workflows/baz.yml"), **changes) == expected


def _config_mismatch(got: str, ref: str = "notrailingslash") -> str:
    return (
        "The ci_config_ref_uri claim does not match, expecting one of "
        f"['gitlab.com/foo/bar//workflows/baz.yml@{ref}', 'gitlab.com/foo/bar//workflows/baz.yml@somesha'], "
        f"got {got!r}"
    )


@pytest.mark.parametrize(
    ("claim", "ref_path", "sha", "expected"),
    [
        # okay: workflow name, followed by a nonempty ref_path
        ("gitlab.com/foo/bar//workflows/baz.yml@refs/tags/v0.0.1", "refs/tags/v0.0.1", "somesha", None),
        ("gitlab.com/foo/bar//workflows/baz.yml@refs/pulls/6", "refs/pulls/6", "somesha", None),
        ("gitlab.com/foo/bar//workflows/baz.yml@refs/heads/main", "refs/heads/main", "somesha", None),
        ("gitlab.com/foo/bar//workflows/baz.yml@notrailingslash", "notrailingslash", "somesha", None),
        # okay: workflow name, followed by a nonempty sha
        ("gitlab.com/foo/bar//workflows/baz.yml@somesha", "someref", "somesha", None),
        # bad: either ref_path or sha empty (a null one is missing, as `check_claims_existence` finds)
        ("gitlab.com/foo/bar//workflows/baz.yml@somesha", None, "somesha", "Missing claim 'ref_path'"),
        ("gitlab.com/foo/bar//workflows/baz.yml@somesha", "", "somesha", "The ref_path and sha claims are empty"),
        ("gitlab.com/foo/bar//workflows/baz.yml@missing", "someref", None, "Missing claim 'sha'"),
        ("gitlab.com/foo/bar//workflows/baz.yml@missing", "someref", "", "The ref_path and sha claims are empty"),
        # bad: both ref_path and sha are missing
        ("gitlab.com/foo/bar//workflows/baz.yml@missing", None, None, "Missing claim 'ref_path'"),
        ("gitlab.com/foo/bar//workflows/baz.yml@missing", "", "", "The ref_path and sha claims are empty"),
        # bad: workflow name with various attempted impersonations on the ref_path
        (
            "gitlab.com/foo/bar//workflows/baz.yml@fake.yml@notrailingslash",
            "somesha",
            "notrailingslash",
            _config_mismatch("gitlab.com/foo/bar//workflows/baz.yml@fake.yml@notrailingslash"),
        ),
        (
            "gitlab.com/foo/bar//workflows/baz.yml@fake.yml@refs/pulls/6",
            "somesha",
            "refs/pulls/6",
            _config_mismatch("gitlab.com/foo/bar//workflows/baz.yml@fake.yml@refs/pulls/6", "refs/pulls/6"),
        ),
        # bad: missing tail or workflow name or otherwise partial
        (
            "gitlab.com/foo/bar//workflows/baz.yml@",
            "somesha",
            "notrailingslash",
            _config_mismatch("gitlab.com/foo/bar//workflows/baz.yml@"),
        ),
        (
            "gitlab.com/foo/bar//workflows/@",
            "somesha",
            "notrailingslash",
            _config_mismatch("gitlab.com/foo/bar//workflows/@"),
        ),
        (
            "gitlab.com/foo/bar//workflows/",
            "somesha",
            "notrailingslash",
            _config_mismatch("gitlab.com/foo/bar//workflows/"),
        ),
        ("baz.yml", "somesha", "notrailingslash", _config_mismatch("baz.yml")),
        (
            "gitlab.com/foo/bar//workflows/baz.yml@malicious.yml@",
            "somesha",
            "notrailingslash",
            _config_mismatch("gitlab.com/foo/bar//workflows/baz.yml@malicious.yml@"),
        ),
        (
            "gitlab.com/foo/bar//workflows/baz.yml@@",
            "somesha",
            "notrailingslash",
            _config_mismatch("gitlab.com/foo/bar//workflows/baz.yml@@"),
        ),
        ("", "", "", "The ci_config_ref_uri claim is empty"),
    ],
)
def test_ci_config_ref_uri(claim: str, ref_path: str | None, sha: str | None, expected: str | None) -> None:
    """Warehouse's test_gitlab_publisher_ci_config_ref_uri, on check()."""
    assert gitlab_check(ci_config_ref_uri=claim, ref_path=ref_path, sha=sha) == expected


@pytest.mark.parametrize(
    ("truth", "claim", "valid"),
    [
        ("repo:foo/bar", "repo:foo/bar:someotherstuff", True),
        ("repo:foo/bar", "repo:foo/bar:", True),
        ("repo:fOo/BaR", "repo:foo/bar", True),
        ("repo:foo/bar", "repo:fOo/BaR:", True),
        ("repo:foo/bar:someotherstuff", "repo:foo/bar", False),
        ("repo:foo/bar-baz", "repo:foo/bar", False),
        ("repo:foo/bar", "repo:foo/bar-baz", False),
    ],
)
def test_sub(truth: str, claim: str, valid: bool) -> None:
    """Warehouse's test_gitlab_publisher_sub_claim, its "repo:" standing for GitLab's "project_path:": only
    the first two parts of `sub` count, without case."""
    namespace, _, project = truth.removeprefix("repo:").partition("/")
    publisher = GitLabPublisher(namespace, project, "workflows/baz.yml")
    assert gitlab_check(publisher, sub="project_path:" + claim.removeprefix("repo:")) == (
        None if valid else failed("sub")
    )


@pytest.mark.parametrize(
    ("truth", "claim", "valid"),
    [
        ("", None, True),
        ("", "", True),
        ("", "some-environment", True),
        ("some-environment", "some-environment", True),
        ("some-environment", "sOmE-eNvIrOnMeNt", False),
        ("some-environment", None, False),
        ("some-environment", "some-other-environment", False),
    ],
)
def test_gitlab_environment(truth: str, claim: str | None, valid: bool) -> None:
    """Warehouse's test_gitlab_publisher_environment_claim: optional, exact."""
    expected = None if valid else "Check failed for optional claim 'environment'"
    assert gitlab_check(replace(GITLAB, environment=truth), environment=claim) == expected


def test_a_self_managed_gitlab_names_its_own_host() -> None:
    """`ci_config_ref_uri` starts with the issuer's host (Warehouse's `issuer_url.removeprefix("https://")`):
    a token from gitlab.example.com that names gitlab.com's project is refused."""
    issuer = "https://gitlab.example.com"
    own = gitlab_claims(iss=issuer, ci_config_ref_uri="gitlab.example.com/foo/bar//workflows/baz.yml@refs/heads/main")
    assert check("gitlab", GITLAB, own, issuer_url=issuer) is None
    assert check("gitlab", GITLAB, gitlab_claims(iss=issuer), issuer_url=issuer) == (
        "The ci_config_ref_uri claim does not match, expecting one of "
        "['gitlab.example.com/foo/bar//workflows/baz.yml@refs/heads/main', "
        "'gitlab.example.com/foo/bar//workflows/baz.yml@somesha'], "
        "got 'gitlab.com/foo/bar//workflows/baz.yml@refs/heads/main'"
    )


def test_a_gitlab_publisher_with_an_environment_is_preferred() -> None:
    anywhere = ("any", GITLAB)
    production = ("prod", replace(GITLAB, environment="production"))
    for candidates in ([anywhere, production], [production, anywhere]):
        claims = gitlab_claims(environment="production")
        assert find("gitlab", candidates, claims, issuer_url=GITLAB_ISSUER) == production
        claims = gitlab_claims(environment="Production")
        assert find("gitlab", candidates, claims, issuer_url=GITLAB_ISSUER) == anywhere


# -- generic issuers ---------------------------------------------------------------------------------------

GENERIC = GenericPublisher("ci:project/42:ref:refs/heads/main", (("pipeline_source", "push"), ("project_id", "42")))


def generic_claims(**changes: Any) -> dict[str, Any]:
    claims = {
        "iss": GENERIC_ISSUER,
        "aud": "upload-gateway",
        "jti": "j-1",
        "sub": "ci:project/42:ref:refs/heads/main",
        "pipeline_source": "push",
        "project_id": "42",
    }
    return with_changes(claims, changes)


def generic_check(publisher: GenericPublisher = GENERIC, **changes: Any) -> str | None:
    return check("generic", publisher, generic_claims(**changes), issuer_url=GENERIC_ISSUER)


def test_generic_subject_and_claims_are_exact() -> None:
    assert generic_check() is None
    assert generic_check(sub="ci:project/42:ref:refs/heads/Main") == failed("sub")
    assert generic_check(project_id="43") == failed("project_id")
    assert generic_check(project_id=None) == "Missing claim 'project_id'"
    assert generic_check(pipeline_source="PUSH") == failed("pipeline_source")
    assert generic_check(jti=None) == "Missing claim 'jti'"
    assert generic_check(sub=None) == "Missing claim 'sub'"


def test_generic_claims_compare_by_their_json_spelling() -> None:
    publisher = GenericPublisher("s", (("email_verified", "true"), ("project_id", "42")))
    assert generic_check(publisher, sub="s", project_id=42, email_verified=True) is None
    assert generic_check(publisher, sub="s", project_id=42, email_verified=False) == failed("email_verified")
    assert generic_check(publisher, sub="s", project_id=42.0, email_verified=True) == failed("project_id")


def test_the_most_specific_generic_publisher_is_preferred() -> None:
    loose = ("loose", GenericPublisher(GENERIC.subject))
    strict = ("strict", GENERIC)
    for candidates in ([loose, strict], [strict, loose]):
        assert find("generic", candidates, generic_claims(), issuer_url=GENERIC_ISSUER) == strict
        assert find("generic", candidates, generic_claims(project_id="7"), issuer_url=GENERIC_ISSUER) == loose
    assert find("generic", [strict], generic_claims(project_id="7"), issuer_url=GENERIC_ISSUER) == failed("project_id")
    assert find("generic", [strict], generic_claims(sub="other"), issuer_url=GENERIC_ISSUER) == NOT_FOUND


# -- parse_publisher: Warehouse's tests/unit/oidc/forms/test_github.py, test_gitlab.py ----------------------


def refused(kind: Kind, fields: dict[str, Any]) -> str:
    """The one line parse_publisher refuses `fields` with (None values left out, as an absent field)."""
    with pytest.raises(ValueError, match=r"^[^:]+: ") as refusal:
        parse_publisher(kind, {name: value for name, value in fields.items() if value is not None})
    message = str(refusal.value)
    assert message.isprintable() and len(message) < 400
    return message


GITHUB_FIELDS = {
    "repository_owner": "some-owner",
    "repository_owner_id": "1234",
    "repository_name": "some-repo",
    "workflow_filename": "some-workflow.yml",
}


def test_a_github_publisher_is_parsed() -> None:
    """Warehouse's TestGitHubPublisherForm.test_validate (the owner id typed in: there is no GitHub API
    to ask offline)."""
    publisher = parse_publisher("github", GITHUB_FIELDS | {"workflow_filename": " some-workflow.yml "})
    assert publisher == GitHubPublisher("some-owner", "1234", "some-repo", "some-workflow.yml")


@pytest.mark.parametrize(
    "data",
    [
        {"owner": None, "repository": "some", "workflow_filename": "some"},
        {"owner": "", "repository": "some", "workflow_filename": "some"},
        {"owner": "invalid_characters@", "repository": "some", "workflow_filename": "some"},
        {"repository": None, "owner": "some", "workflow_filename": "some"},
        {"repository": "", "owner": "some", "workflow_filename": "some"},
        {"repository": "$invalid#characters", "owner": "some", "workflow_filename": "some"},
        {"repository": "some", "owner": "some", "workflow_filename": None},
        {"repository": "some", "owner": "some", "workflow_filename": ""},
    ],
)
def test_github_basic_invalid_fields(data: dict[str, str | None]) -> None:
    """Warehouse's test_validate_basic_invalid_fields (its `owner` and `repository` named as here)."""
    fields = {
        "repository_owner": data["owner"],
        "repository_owner_id": "1234",
        "repository_name": data["repository"],
        "workflow_filename": data["workflow_filename"],
    }
    refused("github", fields)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("repository_owner", None, "repository_owner: Specify GitHub repository owner (username or organization)"),
        ("repository_owner", "-leading-dash", "repository_owner: Invalid GitHub user or organization name."),
        ("repository_owner", "some-owner\n", "repository_owner: Invalid GitHub user or organization name."),
        ("repository_owner_id", None, "repository_owner_id: Specify the owner's numeric id"),
        ("repository_owner_id", "octocat", "repository_owner_id: Specify the owner's numeric id"),
        ("repository_owner_id", "-1", "repository_owner_id: Specify the owner's numeric id"),
        ("repository_name", None, "repository_name: Specify repository name"),
        ("repository_name", "some repo", "repository_name: Invalid repository name"),
        ("workflow_filename", ".yml", "workflow_filename: Give the workflow's file name"),
    ],
)
def test_github_field_refusals(field: str, value: str | None, message: str) -> None:
    """Warehouse's words, and what to do; a trailing newline (which Warehouse's `$` lets through) is refused."""
    assert refused("github", GITHUB_FIELDS | {field: value}).startswith(message)


def test_forgejo_owners_may_hold_dots_and_underscores() -> None:
    """Forgejo's user names take '_' and '.', which GitHub's (and Warehouse's expression) do not."""
    fields = GITHUB_FIELDS | {"repository_owner": "john.doe_2"}
    assert parse_publisher("forgejo", fields) == GitHubPublisher("john.doe_2", "1234", "some-repo", "some-workflow.yml")
    assert refused("github", fields).startswith("repository_owner: Invalid GitHub user or organization name.")
    assert refused("forgejo", fields | {"repository_owner": ""}).startswith(
        "repository_owner: Specify Forgejo repository owner"
    )


@pytest.mark.parametrize("workflow_filename", ["missing_suffix", "/slash", "/many/slashes", "/slash.yml"])
def test_github_workflow_filename_refusals(workflow_filename: str) -> None:
    """Warehouse's test_validate_workflow_filename_raises."""
    refused("github", GITHUB_FIELDS | {"workflow_filename": workflow_filename})


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ("f" * 256, "Environment name is too long"),
        (" foo", "Environment name may not start with whitespace"),
        ("foo ", "Environment name may not end with whitespace"),
        ("'", "Environment name must not contain non-printable characters"),
        ('"', "Environment name must not contain non-printable characters"),
        ("`", "Environment name must not contain non-printable characters"),
        (",", "Environment name must not contain non-printable characters"),
        (";", "Environment name must not contain non-printable characters"),
        ("\\", "Environment name must not contain non-printable characters"),
        ("\x00", "Environment name must not contain non-printable characters"),
        ("\x1f", "Environment name must not contain non-printable characters"),
        ("\x7f", "Environment name must not contain non-printable characters"),
        ("\t", "Environment name must not contain non-printable characters"),
        ("\r", "Environment name must not contain non-printable characters"),
        ("\n", "Environment name must not contain non-printable characters"),
        ("pypi\u2028", "Environment name must not contain non-printable characters"),  # beyond Warehouse's set
    ],
)
def test_github_environment_refusals(environment: str, expected: str) -> None:
    """Warehouse's test_validate_environment_raises."""
    assert refused("github", GITHUB_FIELDS | {"environment": environment}).startswith(f"environment: {expected}")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("wu-tang", "wu-tang"),  # Non-alpha characters are preserved
        ("WU-TANG", "wu-tang"),  # Alpha characters are lowercased
        ("Foo   Bar", "foo   bar"),  # Whitespace is preserved
        ("", ""),  # Empty string is empty string
        (None, ""),  # None and empty string are equivalent
    ],
)
def test_github_environment_is_stored_lower_cased(data: str | None, expected: str) -> None:
    """Warehouse's test_normalized_environment and test_validate_environment_passes."""
    fields = GITHUB_FIELDS | ({} if data is None else {"environment": data})
    publisher = parse_publisher("github", fields)
    assert isinstance(publisher, GitHubPublisher) and publisher.environment == expected


GITLAB_FIELDS = {"namespace": "some-owner", "project": "some-repo", "workflow_filepath": "subfolder/some-workflow.yml"}


@pytest.mark.parametrize(
    "data",
    [
        {"namespace": "some-owner", "project": "some-repo", "workflow_filepath": "subfolder/some-workflow.yml"},
        {
            "namespace": "some-group/some-subgroup",
            "project": "some-repo",
            "workflow_filepath": "subfolder/some-workflow.yml",
        },
        # Leading/trailing whitespace is stripped from filepath
        {
            "namespace": "some-group/some-subgroup",
            "project": "some-repo",
            "workflow_filepath": "  subfolder/some-workflow.yml  ",
        },
    ],
)
def test_a_gitlab_publisher_is_parsed(data: dict[str, str]) -> None:
    """Warehouse's TestGitLabPublisherForm.test_validate (the issuer is the one the publisher is added to,
    not a field)."""
    publisher = parse_publisher("gitlab", data)
    assert publisher == GitLabPublisher(data["namespace"], data["project"], "subfolder/some-workflow.yml")


@pytest.mark.parametrize(
    "data",
    [
        {"namespace": None, "project": "some", "workflow_filepath": "some"},
        {"namespace": "", "project": "some", "workflow_filepath": "some"},
        {"namespace": "invalid_characters@", "project": "some", "workflow_filepath": "some"},
        {"namespace": "invalid_parethen(sis", "project": "some", "workflow_filepath": "some"},
        {"namespace": "/start_with_slash", "project": "some", "workflow_filepath": "some"},
        {"namespace": "some", "project": "invalid space", "workflow_filepath": "some"},
        {"namespace": "some", "project": "invalid+plus", "workflow_filepath": "some"},
        {"project": None, "namespace": "some", "workflow_filepath": "some"},
        {"project": "", "namespace": "some", "workflow_filepath": "some"},
        {"project": "$invalid#characters", "namespace": "some", "workflow_filepath": "some"},
        {"project": "some", "namespace": "some", "workflow_filepath": None},
        {"project": "some", "namespace": "some", "workflow_filepath": ""},
    ],
)
def test_gitlab_basic_invalid_fields(data: dict[str, str | None]) -> None:
    """Warehouse's test_validate_basic_invalid_fields (GitLab's)."""
    refused("gitlab", data)


@pytest.mark.parametrize("project_name", ["invalid.git", "invalid.atom", "invalid--project"])
def test_gitlab_reserved_project_names(project_name: str) -> None:
    """Warehouse's test_reserved_project_names."""
    refused("gitlab", GITLAB_FIELDS | {"namespace": "some", "project": project_name})


@pytest.mark.parametrize(
    "namespace",
    ["invalid.git", "invalid.atom", "consecutive--special-characters", "must-end-with-non-special-characters-"],
)
def test_gitlab_reserved_namespaces(namespace: str) -> None:
    """Warehouse's test_reserved_organization_names."""
    message = refused("gitlab", GITLAB_FIELDS | {"namespace": namespace, "project": "valid-project"})
    assert message.startswith("namespace: ")


@pytest.mark.parametrize(
    "workflow_filepath", ["missing_suffix", "/begin_slash.yml", "end_with_slash.yml/", "/begin/and/end/slash.yml/"]
)
def test_gitlab_workflow_filepath_refusals(workflow_filepath: str) -> None:
    """Warehouse's test_validate_workflow_filepath."""
    assert refused("gitlab", GITLAB_FIELDS | {"workflow_filepath": workflow_filepath}).startswith("workflow_filepath: ")


@pytest.mark.parametrize(("data", "expected"), [("", ""), ("  ", ""), ("\t\r\n", ""), (None, "")])
def test_gitlab_whitespace_is_no_environment(data: str | None, expected: str) -> None:
    """Warehouse's test_normalized_environment (GitLab's)."""
    publisher = parse_publisher("gitlab", GITLAB_FIELDS | ({} if data is None else {"environment": data}))
    assert isinstance(publisher, GitLabPublisher) and publisher.environment == expected


def test_gitlab_environments_keep_their_case() -> None:
    publisher = parse_publisher("gitlab", GITLAB_FIELDS | {"environment": "Production/EU ${X}"})
    assert isinstance(publisher, GitLabPublisher) and publisher.environment == "Production/EU ${X}"
    assert refused("gitlab", GITLAB_FIELDS | {"environment": "prod;rm"}).startswith(
        "environment: Invalid environment name"
    )


def test_a_generic_publisher_is_parsed_with_its_claims_sorted() -> None:
    fields = {"subject": "repo:x", "claim.b": "2", "claim.a": "1"}
    assert parse_publisher("generic", fields) == GenericPublisher("repo:x", (("a", "1"), ("b", "2")))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "subject: Specify the exact 'sub' claim"),
        ({"subject": "a\nb"}, "subject: Give the 'sub' claim as printable text"),
        ({"subject": "s", "claim.exp": "1"}, "claim.exp: The claim 'exp' cannot be configured"),
        ({"subject": "s", "claim.sub": "1"}, "claim.sub: The claim 'sub' cannot be configured: set it as the subject"),
        ({"subject": "s", "claim.": "1"}, "claim.: Invalid claim name"),
        ({"subject": "s", "claim.a b": "1"}, "claim.a b: Invalid claim name"),
        ({"subject": "s", "claim.a": ""}, "claim.a: Give the claim's exact value"),
        ({"subject": "s", "claims": "a=1"}, "claims: Not a field of a generic publisher"),
    ],
)
def test_generic_refusals(fields: dict[str, str], message: str) -> None:
    assert refused("generic", fields).startswith(message)


def test_unknown_fields_kinds_and_values_are_refused() -> None:
    assert refused("github", GITHUB_FIELDS | {"repository": "a/b"}).startswith(
        "repository: Not a field of a github publisher; give only repository_owner, "
    )
    assert refused("gitlab", GITLAB_FIELDS | {"issuer_url": "https://gitlab.com"}).startswith("issuer_url: ")
    assert refused("github", GITHUB_FIELDS | {"repository_owner_id": 1234}) == (
        "repository_owner_id: Give this field as text"
    )
    assert refused("github", GITHUB_FIELDS | {"\x1b[2Jx": "1"}).startswith("[2Jx: Not a field")
    with pytest.raises(ValueError, match=r"^kind: unknown publisher kind 'bitbucket'; use one of github, gitlab"):
        parse_publisher("bitbucket", {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "publisher"),
    [
        ("github", GitHubPublisher("octo-org", "1234", "sampleproject", "release.yml", "pypi")),
        ("forgejo", FORGEJO),
        ("gitlab", GitLabPublisher("group/sub", "proj", "ci/release.yml", "Production")),
        ("generic", GENERIC),
        ("generic", GenericPublisher("only-sub")),
    ],
)
def test_fields_round_trip(kind: Kind, publisher: Publisher) -> None:
    fields = publisher_fields(publisher)
    assert all(isinstance(value, str) for value in fields.values())
    assert parse_publisher(kind, fields) == publisher


@pytest.mark.parametrize(
    ("kind", "publisher", "text"),
    [
        (
            "github",
            GitHubPublisher("octo-org", "1234", "sampleproject", "release.yml", "pypi"),
            "GitHub octo-org/sampleproject, workflow release.yml, environment pypi",
        ),
        ("forgejo", FORGEJO, "Forgejo user1/testing, workflow test.yml"),
        (
            "gitlab",
            GitLabPublisher("group/sub", "proj", ".gitlab-ci.yml"),
            "GitLab group/sub/proj, CI config .gitlab-ci.yml",
        ),
        (
            "gitlab",
            GitLabPublisher("g", "p", "ci/release.yml", "Production"),
            "GitLab g/p, CI config ci/release.yml, environment Production",
        ),
        (
            "generic",
            GENERIC,
            "OIDC subject ci:project/42:ref:refs/heads/main, pipeline_source = push, project_id = 42",
        ),
    ],
)
def test_describe(kind: Kind, publisher: Publisher, text: str) -> None:
    assert describe(kind, publisher) == text


def test_run_claims_identify_the_run() -> None:
    assert run_claims("github", github_claims()) == {
        "ref": "refs/heads/main",
        "sha": "somesha",
        "repository": "foo/bar",
    }
    assert run_claims("forgejo", forgejo_claims(ref=None)) == {
        "ref": "",
        "sha": "76cb2978acb72029ac23277a6192eea1707c6a2c",
        "repository": "user1/testing",
    }
    assert run_claims("gitlab", gitlab_claims()) == {
        "ref_path": "refs/heads/main",
        "sha": "somesha",
        "project_path": "foo/bar",
    }
    assert run_claims("generic", generic_claims()) == {"sub": "ci:project/42:ref:refs/heads/main"}
    hostile = run_claims("github", github_claims(ref="refs/heads/\x1b[0m\n" + "y" * 1000))
    assert hostile["ref"] == "refs/heads/[0m" + "y" * (MAX_SHOWN - len("refs/heads/[0m")) + "…"
