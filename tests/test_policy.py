from __future__ import annotations

import pytest

from gateway.policy import Allowed, Denied, ProjectAccess, Role, password_upload, project_upload

TOKENS = "https://pkgs.example/account/tokens"


@pytest.mark.parametrize(
    ("mode", "has_2fa", "allowed", "reason"),
    [
        ("allow", False, True, None),
        ("allow", True, True, None),
        ("deny-2fa", False, True, None),
        ("deny-2fa", True, False, "password_with_2fa"),
        ("deny", False, False, "password_uploads_disabled"),
        ("deny", True, False, "password_with_2fa"),
    ],
)
def test_password_uploads(mode: str, has_2fa: bool, allowed: bool, reason: str | None) -> None:
    decision = password_upload(mode, has_2fa=has_2fa, tokens_url=TOKENS)
    assert bool(decision) is allowed
    if isinstance(decision, Denied):
        assert decision.status == 403
        assert decision.reason == reason
        assert "API tokens" in decision.message and TOKENS in decision.message


NEW = ProjectAccess(exists=False, role=None, display_name="New-Lib")
THEIRS = ProjectAccess(exists=True, role=None, display_name="Their-Lib")
OWNED = ProjectAccess(exists=True, role=Role.OWNER, display_name="Mine")
MAINTAINED = ProjectAccess(exists=True, role=Role.MAINTAINER, display_name="Mine")


@pytest.mark.parametrize(
    ("access", "new_projects", "scoped", "expected"),
    [
        (OWNED, "claim", False, Allowed()),
        (MAINTAINED, "claim", False, Allowed()),
        (OWNED, "deny", True, Allowed()),
        (NEW, "claim", False, Allowed(claim=True)),
        (NEW, "claim", True, "not_allowed"),
        (NEW, "deny", False, "new_project_denied"),
        (THEIRS, "claim", False, "not_allowed"),
        (THEIRS, "deny", True, "not_allowed"),
    ],
)
def test_project_uploads(access: ProjectAccess, new_projects: str, scoped: bool, expected: Allowed | str) -> None:
    decision = project_upload(
        access, user_name="alice", new_projects=new_projects, help_url="H", token_project_scoped=scoped
    )
    if isinstance(expected, Allowed):
        assert decision == expected
    else:
        assert isinstance(decision, Denied) and decision.reason == expected and decision.status == 403


def test_refusal_names_user_and_project_like_pypi() -> None:
    decision = project_upload(THEIRS, user_name="alice", new_projects="claim", help_url="H", token_project_scoped=False)
    assert isinstance(decision, Denied)
    assert (
        decision.message
        == "The user 'alice' isn't allowed to upload to project 'Their-Lib'. See H for more information."
    )
