"""Who may upload what: pure decisions over plain values (no I/O, no clock), returned, not raised.

The upload flow turns a `Denied` into the HTTP refusal; tests drive these functions as tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    MAINTAINER = "maintainer"


@dataclass(frozen=True)
class Allowed:
    """The upload may go ahead; `claim` means the uploader becomes the owner of a new project."""

    claim: bool = False

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True)
class Denied:
    status: int
    message: str
    reason: str

    def __bool__(self) -> bool:
        return False


Decision = Allowed | Denied


def password_upload(mode: str, *, has_2fa: bool, tokens_url: str) -> Decision:
    """`policy.password_uploads`: deny-2fa (PyPI's rule since 2023), deny (PyPI's rule today) or allow."""
    if mode == "allow" or (mode == "deny-2fa" and not has_2fa):
        return Allowed()
    if has_2fa:
        return Denied(
            403,
            "Username/Password authentication is no longer supported for accounts with two-factor authentication. "
            f"Migrate to API tokens: {tokens_url}",
            "password_with_2fa",
        )
    return Denied(
        403,
        f"Username/Password authentication is no longer supported. Migrate to API tokens: {tokens_url}",
        "password_uploads_disabled",
    )


@dataclass(frozen=True)
class ProjectAccess:
    """What the store says about the project and this user."""

    exists: bool
    role: Role | None
    display_name: str
    owned: bool = True  # someone has a role on it (an imported project may have nobody yet)


def project_upload(
    access: ProjectAccess, *, user_name: str, new_projects: str, help_url: str, token_project_scoped: bool
) -> Decision:
    """Owners and maintainers upload; a new project is claimed or refused by `policy.new_projects`.

    A project-scoped token never claims: PyPI scopes tokens only to projects that exist.
    """
    if access.role is not None:
        return Allowed()
    if access.exists and not access.owned:
        return unowned_project(access.display_name, user_name)
    if access.exists:
        return Denied(
            403,
            f"The user '{user_name}' isn't allowed to upload to project '{access.display_name}'. "
            f"See {help_url} for more information.",
            "not_allowed",
        )
    if new_projects == "deny":
        return Denied(
            403,
            f"Project '{access.display_name}' does not exist and new projects need an administrator: "
            f"ask one to run 'upload-gateway project grant {access.display_name} {user_name}'",
            "new_project_denied",
        )
    if token_project_scoped:
        return Denied(
            403,
            f"The given token isn't allowed to create project '{access.display_name}': "
            "use an account-wide token for a new project",
            "not_allowed",
        )
    return Allowed(claim=True)


def pending_publisher(new_projects: str, *, display_name: str, user_name: str) -> Decision:
    """A pending publisher a user adds for a project to come, which its first publish creates as theirs: a new
    project all the same, so under `new_projects = "deny"` an administrator adds it (or grants the project)."""
    if new_projects == "deny":
        return Denied(
            403,
            f"Project '{display_name}' does not exist and new projects need an administrator: ask one to run "
            f"'upload-gateway publisher add {display_name} --pending --owner {user_name} …' "
            f"or 'upload-gateway project grant {display_name} {user_name}'",
            "new_project_denied",
        )
    return Allowed()


def unowned_project(display_name: str, user_name: str) -> Denied:
    """A project the index has (or an administrator imported) that nobody in the gateway owns: never claimed by
    whoever uploads first, or a stranger could add files to a project others install."""
    return Denied(
        403,
        f"The project '{display_name}' already exists on the index and has no owner in the gateway: "
        f"an administrator must grant it first ('upload-gateway project grant {display_name} {user_name}')",
        "project_unowned",
    )


def claim_in_progress(display_name: str) -> Denied:
    """Another user's upload is creating this project right now: only one can become its owner."""
    return Denied(
        403,
        f"The project '{display_name}' is being created by another user's upload right now; "
        "it will belong to them: ask its owner for a role",
        "claim_in_progress",
    )


def project_action(access: ProjectAccess, *, action: str, user_name: str, help_url: str) -> Decision:
    """Actions other than uploads, when the operator allows them: removing files needs an owner (as on PyPI)."""
    needed = (Role.OWNER,) if action == "remove_pkg" else (Role.OWNER, Role.MAINTAINER)
    if access.role in needed:
        return Allowed()
    return Denied(
        403,
        f"The user '{user_name}' isn't allowed to {action} on project '{access.display_name}'"
        f"{' (owners only)' if action == 'remove_pkg' else ''}. See {help_url} for more information.",
        "not_allowed",
    )
