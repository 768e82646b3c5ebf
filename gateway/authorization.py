"""Whether an authenticated identity may upload this file, or act on this project.

The password policy is decided on the headers; token caveats and project roles once the form has named the
project, and again, read afresh, before the file's last bytes go to the index. Policy itself is pure
(`gateway.policy`); this module feeds it from the store and returns its decision or raises its refusal. It writes
nothing (a token it finds revoked is only dropped from the authenticator's cache): the upload handler records what
the index accepted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from gateway import policy, tokens
from gateway.authentication import Authenticator, Identity, invalid_auth, invalid_token
from gateway.config import PolicyConfig
from gateway.errors import GatewayError
from gateway.store import Project, Store, UploadState, User

if TYPE_CHECKING:  # annotations only: the CLI's store commands need no form validation
    from gateway.validation import Upload


def project_scoped(identity: Identity) -> bool:
    return any(isinstance(c, tokens.ProjectName | tokens.ProjectID) for c in identity.caveats)


class Authorizer:
    """May this identity upload this file? The password policy (on the headers), token caveats, then project
    roles."""

    def __init__(self, store: Store, authenticator: Authenticator, settings: PolicyConfig, *, public_url: str) -> None:
        self._store = store
        self._authenticator = authenticator
        self._settings = settings
        self._public_url = public_url
        self._help_url = f"{public_url}/account/projects"

    async def authorize_upload(self, identity: Identity, upload: Upload) -> policy.Allowed:
        """The decision, or the refusal raised; nothing is written (a claim is recorded only with its file)."""
        project, role, owned = await self._credentials(identity, upload.project)
        decision = policy.project_upload(
            _access(project, role, upload.name, owned),
            user_name=identity.user.name,
            new_projects=self._settings.new_projects,
            help_url=self._help_url,
            token_project_scoped=project_scoped(identity),
        )
        raise_if_denied(decision)
        assert isinstance(decision, policy.Allowed)
        return decision

    async def authorize_action(self, identity: Identity, action: str, project_name: str, display_name: str) -> None:
        """`remove_pkg`, `doc_upload`… on an existing project, when `policy.allowed_actions` lets them through.

        Just before the index is asked, with the user and token read afresh (as an upload's last check reads them):
        an action changes the index at once, so a revocation must stop it even before this process hears of it."""
        self._still_valid(identity, await self._store.upload_state(project_name, identity.user.id, identity.token_id))
        project, role, owned = await self._credentials(identity, project_name)
        raise_if_denied(
            policy.project_action(
                _access(project, role, display_name, owned),
                action=action,
                user_name=identity.user.name,
                help_url=self._help_url,
            )
        )

    async def confirm_upload(self, identity: Identity, upload: Upload, *, claim: bool) -> None:
        """Is the upload still allowed, now that its file is in? Read afresh: a revoked token, a removed user or
        role, or a new project's claim lost to another user since the upload began, all stop it."""
        state = await self._store.upload_state(upload.project, identity.user.id, identity.token_id)
        self._still_valid(identity, state)
        if state.role is not None:
            return
        if claim and not state.owned:
            if state.claim_holder == identity.user.id:
                return
            raise_if_denied(policy.claim_in_progress(upload.name))
        raise_if_denied(
            policy.project_upload(
                policy.ProjectAccess(exists=True, role=None, display_name=upload.name, owned=state.owned),
                user_name=identity.user.name,
                new_projects=self._settings.new_projects,
                help_url=self._help_url,
                token_project_scoped=project_scoped(identity),
            )
        )

    def _still_valid(self, identity: Identity, state: UploadState) -> None:
        """The user is still there and the token not revoked, as `state` (read afresh) says."""
        if not state.user_exists:
            raise invalid_auth()
        if identity.token is not None and not state.token_valid:
            self._authenticator.forget(identity.token.id)
            raise invalid_token("token has been revoked; create a new one", "revoked_token")

    async def _credentials(self, identity: Identity, project_name: str) -> tuple[Project | None, str | None, bool]:
        """Token caveats for this project (the password policy was applied on the headers); the project (if it
        exists), the role, and whether anyone has a role on it."""
        project, role, owned = await self._store.project_access(project_name, identity.user.id)
        if identity.token is not None:
            if tokens.UPLOAD not in identity.token.permissions:
                raise invalid_token("this token may only read: upload with a token that may upload", "read_only_token")
            if project is None and project_scoped(identity):
                # Refused for certain by the caller's policy (no role on a project that does not exist), in words
                # that say what to do ("isn't allowed to create project … use an account-wide token"); its
                # caveats would only say "not valid for project". The signature was checked on the headers.
                return project, role, owned
            self._authenticator.check_token(identity, project_name, project.id if project else None, time.time())
        return project, role, owned

    def allow_password(self, user: User | None) -> None:
        """`policy.password_uploads`, decided on the headers (does the user exist and have 2FA?) before the
        password is looked at, so the answer never tells a right password from a wrong one."""
        raise_if_denied(
            policy.password_upload(
                self._settings.password_uploads,
                has_2fa=user is not None and user.has_2fa,
                tokens_url=f"{self._public_url}/account/tokens",
            )
        )


def _access(project: Project | None, role: str | None, display_name: str, owned: bool) -> policy.ProjectAccess:
    return policy.ProjectAccess(
        exists=project is not None,
        role=policy.Role(role) if role else None,
        display_name=project.display_name if project else display_name,
        owned=owned,
    )


def raise_if_denied(decision: policy.Decision) -> None:
    if isinstance(decision, policy.Denied):
        raise GatewayError(decision.status, decision.message, decision.reason)
