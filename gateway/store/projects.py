"""Projects and their roles, the files delivered through the gateway (digests and sizes), and what an upload in
flight holds: a new project's claim and a share of its project's size limit, settled by `record_upload`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.store.audit import AuditLog, audit_row
from gateway.store.records import AuditEvent, Project, StoredFile, UploadState, User

# A file's share of its project's size limit is held from its last checks to its record: the index's answer.
RESERVATION_LIFETIME = 900.0
# A claim of a new project is held while its first upload is under way; one that outlives this was abandoned
# (a gateway that stopped mid-upload) and another user may claim the name.
CLAIM_LIFETIME = 3600.0


class Projects(AuditLog):
    async def project_access(self, name: str, user_id: str) -> tuple[Project | None, str | None, bool]:
        """The project (None if the gateway does not know it), the user's role on it, and whether anyone has one."""
        row = await self._row(
            "SELECT projects.*, roles.role, EXISTS (SELECT 1 FROM roles r WHERE r.project = projects.name) AS owned "
            "FROM projects "
            "LEFT JOIN roles ON roles.project = projects.name AND roles.user_id = ? WHERE projects.name = ?",
            (user_id, name),
        )
        if row is None:
            return None, None, False
        return Project(row["name"], row["id"], row["display_name"], row["created"]), row["role"], bool(row["owned"])

    async def hold_claim(self, project: str, user_id: str) -> bool:
        """Reserve a new project's name for `user_id`'s upload; False while another user's upload holds it.

        One statement, so it is atomic: of two users claiming at once exactly one holds the name. The same user's
        concurrent uploads (a wheel and an sdist) share the claim.
        """
        now = time.time()
        rows = await self._returning(
            "INSERT INTO project_claims (project, user_id, holders, expires) VALUES (?, ?, 1, ?) "
            "ON CONFLICT (project) DO UPDATE SET "
            "holders = CASE WHEN project_claims.user_id = excluded.user_id THEN project_claims.holders + 1 ELSE 1 END, "
            "user_id = excluded.user_id, expires = excluded.expires "
            "WHERE project_claims.user_id = excluded.user_id OR project_claims.expires < ? "
            "RETURNING user_id",
            (project, user_id, now + CLAIM_LIFETIME, now),
        )
        return bool(rows)

    async def upload_state(self, project: str, user_id: str, token_id: str | None) -> UploadState:
        """Everything an upload's last check needs, read afresh in one query."""
        row = await self._row(
            "SELECT (SELECT role FROM roles WHERE project = ? AND user_id = ?) AS role, "
            "EXISTS (SELECT 1 FROM roles WHERE project = ?) AS owned, "
            "(SELECT user_id FROM project_claims WHERE project = ?) AS claim_holder, "
            "EXISTS (SELECT 1 FROM users WHERE id = ?) AS user_exists, "
            "EXISTS (SELECT 1 FROM tokens WHERE id = ? AND revoked IS NULL) AS token_valid",
            (project, user_id, project, project, user_id, token_id),
        )
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
        uploads in flight leave no room. One statement, so two uploads never both take the last room."""
        now = time.time()
        cursor = await self._db.execute(
            "INSERT INTO size_reservations (id, project, size, expires) SELECT ?, ?, ?, ? "
            "WHERE (SELECT COALESCE(SUM(size), 0) FROM files WHERE project = ?) "
            "+ (SELECT COALESCE(SUM(size), 0) FROM size_reservations WHERE project = ? AND expires > ?) + ? <= ?",
            (upload_id, project, size, now + RESERVATION_LIFETIME, project, project, now, size, limit),
        )
        return cursor.rowcount == 1

    async def release_size(self, upload_id: str) -> None:
        await self._db.execute("DELETE FROM size_reservations WHERE id = ? OR expires < ?", (upload_id, time.time()))

    async def release_claim(self, project: str, user_id: str) -> None:
        """An upload that held a claim ended without creating the project."""
        for sql, parameters in _release_claim(project, user_id):
            await self._db.execute(sql, parameters)

    async def _ensure_project(self, name: str, display_name: str) -> bool:
        cursor = await self._db.execute(*_ensure_project(name, display_name))
        return cursor.rowcount == 1

    async def grant(self, name: str, display_name: str, user: User, role: str, *, by: str) -> None:
        await self._ensure_project(name, display_name)
        await self._db.execute(
            "INSERT INTO roles (project, user_id, role, created) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (project, user_id) DO UPDATE SET role = excluded.role",
            (name, user.id, role, time.time()),
        )
        await self.audit("project.granted", user_name=user.name, project=name, by=by, role=role)

    async def remove_role(self, name: str, user: User, *, by: str) -> bool:
        cursor = await self._db.execute("DELETE FROM roles WHERE project = ? AND user_id = ?", (name, user.id))
        if cursor.rowcount:
            await self.audit("project.role_removed", user_name=user.name, project=name, by=by)
        return cursor.rowcount == 1

    async def all_projects(self) -> list[Project]:
        """Every project the gateway knows (private reads: what a token scoped by project id alone may list)."""
        return [
            Project(r["name"], r["id"], r["display_name"], r["created"])
            for r in await self._db.execute_fetchall("SELECT * FROM projects ORDER BY name")
        ]

    async def projects_of(self, user: User) -> list[tuple[Project, str]]:
        rows = await self._db.execute_fetchall(
            "SELECT projects.*, roles.role FROM roles JOIN projects ON projects.name = roles.project "
            "WHERE roles.user_id = ? ORDER BY projects.name",
            (user.id,),
        )
        return [(Project(r["name"], r["id"], r["display_name"], r["created"]), r["role"]) for r in rows]

    async def record_upload(
        self,
        file: StoredFile,
        *,
        display_name: str,
        claim: User | None,
        upload_id: str,
        audit: Mapping[str, Any],
    ) -> None:
        """A file the index accepted through the gateway, in one transaction with what it changes.

        Its digests answer duplicates later and sizes add up per project. `claim`: the upload created the project,
        and its uploader (who held the claim) becomes the owner, so a refused or failed upload never owns anything.
        """
        now = time.time()
        statements: list[tuple[str, Sequence[Any]]] = []
        entries: list[AuditEvent] = []
        if claim is not None:
            statements.append(_ensure_project(file.project, display_name))
            statements.append(
                (
                    "INSERT INTO roles (project, user_id, role, created) SELECT ?, ?, 'owner', ? "
                    "WHERE NOT EXISTS (SELECT 1 FROM roles WHERE project = ?)",
                    (file.project, claim.id, now, file.project),
                )
            )
            statements += _release_claim(file.project, claim.id)
            entries.append(AuditEvent(now, "project.claimed", claim.name, None, file.project, None, {}))
        if file.sha256:
            statements.append(
                (
                    "INSERT INTO files "
                    "(filename, project, size, sha256, blake2_256, uploaded, user_name, token_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        file.filename,
                        file.project,
                        file.size,
                        file.sha256,
                        file.blake2_256,
                        now,
                        file.user,
                        file.token_id,
                    ),
                )
            )
            statements.append(("DELETE FROM size_reservations WHERE id = ?", (upload_id,)))
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
        await self._in_one_transaction(statements + [audit_row(entry) for entry in entries])
        await self._mirror.write(*entries)

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
                    await self._db.execute(
                        "INSERT INTO roles (project, user_id, role, created) VALUES (?, ?, 'owner', ?)",
                        (name, owner.id, time.time()),
                    )
            await self.audit("project.imported", user_name=owner.name if owner else None, by=by, count=added)
        return added

    async def file_sha256(self, filename: str) -> str | None:
        """The sha256 of a file the gateway delivered under this name, in any letter case."""
        row = await self._row("SELECT sha256 FROM files WHERE lower(filename) = lower(?)", (filename,))
        return str(row[0]) if row else None

    # --- Reads (issue #14): what the JSON simple pages say of files the gateway delivered ---
    async def delivered_files(self, project: str) -> dict[str, tuple[int, float]]:
        """{lower-case filename: (size, upload time)} of the project's files recorded here."""
        rows = await self._db.execute_fetchall(
            "SELECT filename, size, uploaded FROM files WHERE project = ?", (project,)
        )
        return {str(row[0]).lower(): (int(row[1]), float(row[2])) for row in rows}

    # --- end of reads ---


def _ensure_project(name: str, display_name: str) -> tuple[str, Sequence[Any]]:
    return (
        "INSERT OR IGNORE INTO projects (name, id, display_name, created) VALUES (?, ?, ?, ?)",
        (name, str(uuid.uuid4()), display_name, time.time()),
    )


def _release_claim(project: str, user_id: str) -> list[tuple[str, Sequence[Any]]]:
    return [
        ("UPDATE project_claims SET holders = holders - 1 WHERE project = ? AND user_id = ?", (project, user_id)),
        ("DELETE FROM project_claims WHERE project = ? AND holders <= 0", (project,)),
    ]
