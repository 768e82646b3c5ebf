"""Projects and their roles, the files delivered through the gateway (digests and sizes), and what an upload in
flight holds: a new project's claim and a share of its project's size limit, settled by `record_upload`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping

from gateway.store import tables
from gateway.store.audit import AuditLog
from gateway.store.connection import Step
from gateway.store.records import AuditEvent, Project, StoredFile, UploadState, User

# A file's share of its project's size limit is held from its last checks to its record: the index's answer.
RESERVATION_LIFETIME = 900.0
# A claim of a new project is held while its first upload is under way; one that outlives its lifetime was
# abandoned (a gateway that stopped mid-upload) and another user may claim the name. An upload's claim lasts at
# least as long as the limits let the upload take (`gateway.upload.holding.claim_lifetime`), never less than this.
CLAIM_LIFETIME = 3600.0

projects, roles, files = tables.projects, tables.roles, tables.files


class Projects(AuditLog):
    async def project_access(self, name: str, user_id: str) -> tuple[Project | None, str | None, bool]:
        """The project (None if the gateway does not know it), the user's role on it, and whether anyone has one."""
        row = await self._row(_PROJECT_ACCESS, {"user": user_id, "name": name})
        if row is None:
            return None, None, False
        return _project(row), row["role"], bool(row["owned"])

    async def is_owner(self, project: str, user_id: str) -> bool:
        return (await self.project_access(project, user_id))[1] == "owner"

    async def hold_claim(self, project: str, user_id: str, lifetime: float = CLAIM_LIFETIME) -> bool:
        """Reserve a new project's name for `user_id`'s upload, for `lifetime` seconds; False while another
        user's upload holds it.

        One statement, so it is atomic: of two users claiming at once exactly one holds the name (the conflict
        locks the row). The same user's concurrent uploads (a wheel and an sdist) share the claim.
        """
        now = time.time()
        rows = await self._returning(
            _HOLD_CLAIM, {"project": project, "user": user_id, "expires": now + lifetime, "now": now}
        )
        return bool(rows)

    async def upload_state(self, project: str, user_id: str, token_id: str | None) -> UploadState:
        """Everything an upload's last check needs, read afresh in one query."""
        row = await self._row(_UPLOAD_STATE, {"project": project, "user": user_id, "token": token_id})
        assert row is not None
        return UploadState(
            role=row["role"],
            owned=bool(row["owned"]),
            claim_holder=row["claim_holder"],
            user_exists=bool(row["user_exists"]),
            token_valid=bool(row["token_valid"]),
        )

    async def reserve_size(self, upload_id: str, project: str, size: int, limit: int) -> bool:
        """Hold `size` bytes of the project's limit for one upload; False when the files recorded and the
        uploads in flight leave no room. Two uploads never both take the last room: SQLite has one writer, and
        on PostgreSQL the project's reservations are taken one at a time under an advisory lock of its name."""
        now = time.time()
        steps: list[Step] = [(_SIZE_LOCK, {"project": project})] if self._db.dialect == "postgresql" else []
        values = {"id": upload_id, "project": project, "size": size, "limit": limit}
        steps.append((_RESERVE_SIZE, {**values, "expires": now + RESERVATION_LIFETIME, "now": now}))
        return (await self._steps(steps))[-1].rowcount == 1

    async def release_size(self, upload_id: str) -> None:
        reservations = tables.size_reservations
        await self._execute(
            delete(reservations).where((reservations.c.id == upload_id) | (reservations.c.expires < time.time()))
        )

    async def release_claim(self, project: str, user_id: str) -> None:
        """An upload that held a claim ended without creating the project."""
        await self._steps(_release_claim(project, user_id))

    async def _ensure_project(self, name: str, display_name: str) -> bool:
        """Record a project unless the gateway knows it; whether it was new."""
        return await self._execute(*self._new_project(name, display_name)) == 1

    def _new_project(self, name: str, display_name: str) -> Step:
        """`INSERT … ON CONFLICT DO NOTHING` of a project, in the store's dialect."""
        return _NEW_PROJECT[self._db.dialect], _project_values(name, display_name)

    async def grant(self, name: str, display_name: str, user: User, role: str, *, by: str) -> None:
        async with self._transaction():
            await self._ensure_project(name, display_name)
            await self._execute(
                text(
                    "INSERT INTO roles (project, user_id, role, created) VALUES (:project, :user, :role, :now) "
                    "ON CONFLICT (project, user_id) DO UPDATE SET role = excluded.role"
                ),
                {"project": name, "user": user.id, "role": role, "now": time.time()},
            )
            await self.audit("project.granted", user_name=user.name, project=name, by=by, role=role)

    async def remove_role(self, name: str, user: User, *, by: str) -> bool:
        async with self._transaction():
            removed = await self._execute(delete(roles).where(roles.c.project == name, roles.c.user_id == user.id))
            if removed:
                await self.audit("project.role_removed", user_name=user.name, project=name, by=by)
        return removed == 1

    async def all_projects(self) -> list[Project]:
        """Every project the gateway knows (private reads: what a token scoped by project id alone may list)."""
        return sorted((_project(row) for row in await self._rows(select(projects))), key=lambda p: p.name)

    async def projects_of(self, user: User) -> list[tuple[Project, str]]:
        rows = await self._rows(
            select(projects, roles.c.role)
            .join(roles, roles.c.project == projects.c.name)
            .where(roles.c.user_id == user.id)
        )
        return sorted(((_project(row), str(row["role"])) for row in rows), key=lambda pair: pair[0].name)

    async def record_upload(
        self,
        file: StoredFile,
        *,
        display_name: str,
        claim: User | None,
        reservation: str | None,
        audit: Mapping[str, Any],
    ) -> None:
        """A file the index accepted through the gateway, in one transaction with what it changes.

        Its digests answer duplicates later and sizes add up per project. `claim`: the upload created the project,
        and its uploader (who held the claim) becomes the owner, so a refused or failed upload never owns anything.
        """
        now = time.time()
        steps: list[Step] = []
        entries: list[AuditEvent] = []
        if claim is not None:
            steps.append(self._new_project(file.project, display_name))
            steps.append((_FIRST_OWNER, {"project": file.project, "user": claim.id, "now": now}))
            steps += _release_claim(file.project, claim.id)
            entries.append(AuditEvent(now, "project.claimed", claim.name, None, file.project, None, {}))
        if file.sha256:
            row = {
                "filename": file.filename,
                "project": file.project,
                "size": file.size,
                "sha256": file.sha256,
                "blake2_256": file.blake2_256,
                "uploaded": now,
                "user_name": file.user,
                "token_id": file.token_id,
            }
            steps.append((_INSERT_FILE, row))
            if reservation is not None:
                steps.append((_DROP_RESERVATION, {"upload_id": reservation}))
        fields = dict(audit)
        entries.append(
            AuditEvent(
                now,
                "upload.accepted",
                fields.pop("user_name", None),
                fields.pop("token_id", None),
                fields.pop("project", None),
                fields.pop("address", None),
                fields,
            )
        )
        # One call to the database for the whole record (a call per statement was most of what recording a
        # small upload cost).
        await self._audited(steps, entries)

    async def import_projects(self, projects: list[tuple[str, str]], owner: User | None, *, by: str) -> int:
        """Record projects the index already has (normalized name, display name): unowned, or owned by `owner`.

        Projects the gateway knows already are left as they are. Returns how many were new to it.
        """
        added = 0
        async with self._transaction():
            for name, display_name in projects:
                if not await self._ensure_project(name, display_name):
                    continue
                added += 1
                if owner is not None:
                    await self._execute(
                        roles.insert().values(project=name, user_id=owner.id, role="owner", created=time.time())
                    )
            await self.audit("project.imported", user_name=owner.name if owner else None, by=by, count=added)
        return added

    async def file_sha256(self, filename: str) -> str | None:
        """The sha256 of a file the gateway delivered under this name, in any letter case."""
        row = await self._row(_FILE_SHA256, {"filename": filename})
        return str(row["sha256"]) if row else None

    # --- Reads (issue #14): what the JSON simple pages say of files the gateway delivered ---
    async def delivered_files(self, project: str) -> dict[str, tuple[int, float]]:
        """{lower-case filename: (size, upload time)} of the project's files recorded here."""
        rows = await self._rows(
            select(files.c.filename, files.c.size, files.c.uploaded).where(files.c.project == project)
        )
        return {str(row["filename"]).lower(): (int(row["size"]), float(row["uploaded"])) for row in rows}

    # --- end of reads ---


def _project_values(name: str, display_name: str) -> dict[str, Any]:
    return {"name": name, "id": str(uuid.uuid4()), "display_name": display_name, "created": time.time()}


def _project(row: RowMapping) -> Project:
    return Project(row["name"], row["id"], row["display_name"], row["created"])


# Statements every upload runs, parsed once.
_PROJECT_ACCESS = text(
    "SELECT projects.*, roles.role, "
    "EXISTS (SELECT 1 FROM roles r WHERE r.project = projects.name) AS owned FROM projects "
    "LEFT JOIN roles ON roles.project = projects.name AND roles.user_id = :user WHERE projects.name = :name"
)
_HOLD_CLAIM = text(
    "INSERT INTO project_claims (project, user_id, holders, expires) VALUES (:project, :user, 1, :expires) "
    "ON CONFLICT (project) DO UPDATE SET holders = CASE WHEN project_claims.user_id = excluded.user_id "
    "THEN project_claims.holders + 1 ELSE 1 END, "
    "user_id = excluded.user_id, expires = excluded.expires "
    "WHERE project_claims.user_id = excluded.user_id OR project_claims.expires < :now "
    "RETURNING user_id"
)
_UPLOAD_STATE = text(
    "SELECT (SELECT role FROM roles WHERE project = :project AND user_id = :user) AS role, "
    "EXISTS (SELECT 1 FROM roles WHERE project = :project) AS owned, "
    "(SELECT user_id FROM project_claims WHERE project = :project) AS claim_holder, "
    "EXISTS (SELECT 1 FROM users WHERE id = :user) AS user_exists, "
    "EXISTS (SELECT 1 FROM tokens WHERE id = :token AND revoked IS NULL) AS token_valid"
)
_RESERVE_SIZE = text(
    "INSERT INTO size_reservations (id, project, size, expires) "
    "SELECT :id, :project, CAST(:size AS BIGINT), CAST(:expires AS DOUBLE PRECISION) "
    "WHERE (SELECT COALESCE(SUM(size), 0) FROM files WHERE project = :project) "
    "+ (SELECT COALESCE(SUM(size), 0) FROM size_reservations WHERE project = :project AND expires > :now) "
    "+ :size <= :limit"
)
# A transaction-scoped advisory lock per project: (class, object) = ("size" in ASCII, a hash of the name).
_SIZE_LOCK = text("SELECT pg_advisory_xact_lock(1936292453, hashtext(:project))")
_FIRST_OWNER = text(
    "INSERT INTO roles (project, user_id, role, created) "
    "SELECT :project, :user, 'owner', CAST(:now AS DOUBLE PRECISION) "
    "WHERE NOT EXISTS (SELECT 1 FROM roles WHERE project = :project)"
)
_RELEASE_CLAIM = text("UPDATE project_claims SET holders = holders - 1 WHERE project = :project AND user_id = :user")
_DROP_CLAIM = text("DELETE FROM project_claims WHERE project = :project AND holders <= 0")


# Built once, the statements of every upload (a statement built per call costs more than its execution).
_NEW_PROJECT = {
    "sqlite": sqlite_insert(projects).on_conflict_do_nothing(),
    "postgresql": pg_insert(projects).on_conflict_do_nothing(),
}
_INSERT_FILE = files.insert()
_DROP_RESERVATION = delete(tables.size_reservations).where(tables.size_reservations.c.id == bindparam("upload_id"))
_FILE_SHA256 = select(files.c.sha256).where(func.lower(files.c.filename) == func.lower(bindparam("filename")))


def _release_claim(project: str, user_id: str) -> list[Step]:
    params = {"project": project, "user": user_id}
    return [(_RELEASE_CLAIM, params), (_DROP_CLAIM, params)]
