"""Trusted publishers as stored (issue #19): a project's publishers, each with a principal of its own, and pending
publishers for projects that do not exist yet.

A publisher's principal is a `users` row of kind "publisher" under the publisher's id: it holds the publisher's
one role (maintainer of its project) and the tokens minted for it, so the upload path, revocation, the change
log and the audit treat its uploads as any token's. No name lookup, sign-in or password finds it
(`Users.get_user` finds people only); removing the publisher removes the principal, and with it the role and
every token it was given.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from gateway.store import tables
from gateway.store.projects import Projects
from gateway.store.records import PendingPublisher, ProjectBeingCreated, Publisher, StoreError, User

publishers, pending = tables.publishers, tables.pending_publishers
PUBLISHER = "publisher"


def principal_name(publisher_id: str) -> str:
    """The principal's name, as the audit and the files' records show who uploaded."""
    return f"publisher:{publisher_id}"


class Publishers(Projects):
    async def add_publisher(
        self, project: str, issuer: str, kind: str, fields: Mapping[str, str], *, issuer_url: str, by: str
    ) -> Publisher:
        """A publisher for `project` (which the gateway knows), its principal and the principal's role; only
        tokens whose `iss` is `issuer_url` match it."""
        async with self._transaction():
            if await self._row(select(tables.projects.c.name).where(tables.projects.c.name == project)) is None:
                raise StoreError(f"no project named {project[:60]!r}")
            return await self._new_publisher(project, issuer, kind, fields, issuer_url=issuer_url, by=by)

    async def _new_publisher(
        self, project: str, issuer: str, kind: str, fields: Mapping[str, str], *, issuer_url: str, by: str
    ) -> Publisher:
        now = time.time()
        found = Publisher(str(uuid.uuid4()), project, issuer, issuer_url, kind, dict(fields), by, now)
        name = principal_name(found.id)
        steps = [
            (
                insert(tables.users),
                {"id": found.id, "name": name, "password_hash": "!", "created": int(now), "kind": PUBLISHER},
            ),
            (insert(publishers), {**_values(found), "id": found.id}),
            (
                insert(tables.roles),
                {"project": project, "user_id": found.id, "role": "maintainer", "created": now},
            ),
        ]
        try:
            await self._steps(steps)
        except IntegrityError:
            raise StoreError(f"{project} has that publisher already") from None
        await self.audit(
            "publisher.added",
            user_name=by,
            project=project,
            publisher=found.id,
            issuer=issuer,
            issuer_url=issuer_url,
            kind=kind,
            fields=dict(fields),
        )
        return found

    async def add_pending_publisher(
        self,
        project: str,
        display_name: str,
        issuer: str,
        kind: str,
        fields: Mapping[str, str],
        *,
        issuer_url: str,
        user: User,
        expires: float,
    ) -> PendingPublisher:
        """A publisher for a project that does not exist yet; its first exchange creates it, owned by `user`."""
        now = time.time()
        found = PendingPublisher(
            str(uuid.uuid4()),
            project,
            display_name,
            issuer,
            issuer_url,
            kind,
            dict(fields),
            user.id,
            user.name,
            now,
            expires,
        )
        try:
            async with self._transaction():
                await self._execute(
                    insert(pending).values(
                        id=found.id,
                        project=project,
                        display_name=display_name,
                        issuer=issuer,
                        issuer_url=issuer_url,
                        kind=kind,
                        fields=json.dumps(dict(fields), sort_keys=True),
                        added_by=user.id,
                        created=now,
                        expires=expires,
                    )
                )
                await self.audit(
                    "publisher.pending_added",
                    user_name=user.name,
                    project=project,
                    publisher=found.id,
                    issuer=issuer,
                    issuer_url=issuer_url,
                    kind=kind,
                    fields=dict(fields),
                )
        except IntegrityError:
            raise StoreError(f"{project} has that pending publisher already") from None
        return found

    async def publishers_of(
        self, *, project: str | None = None, issuer: tuple[str, str] | None = None
    ) -> list[Publisher]:
        """A project's publishers, or those of one issuer (its name and URL, both as the publisher was added)."""
        query = select(publishers).order_by(publishers.c.project, publishers.c.created)
        if project is not None:
            query = query.where(publishers.c.project == project)
        if issuer is not None:
            query = query.where(publishers.c.issuer == issuer[0], publishers.c.issuer_url == issuer[1])
        return [_publisher(row) for row in await self._rows(query)]

    async def publisher_project_ids(self, publisher_id: str) -> tuple[str, ...]:
        """The ids of the projects a publisher may publish (one; none once either is gone)."""
        rows = await self._rows(
            select(tables.projects.c.id)
            .join(publishers, publishers.c.project == tables.projects.c.name)
            .where(publishers.c.id == publisher_id)
        )
        return tuple(str(row["id"]) for row in rows)

    async def pending_publishers_of(
        self, now: float, *, project: str | None = None, issuer: tuple[str, str] | None = None
    ) -> list[PendingPublisher]:
        """The pending publishers not expired at `now`; `issuer` as `publishers_of`'s."""
        query = (
            select(pending, tables.users.c.name.label("added_by_name"))
            .join(tables.users, tables.users.c.id == pending.c.added_by)
            .where(pending.c.expires > now)
            .order_by(pending.c.project, pending.c.created)
        )
        if project is not None:
            query = query.where(pending.c.project == project)
        if issuer is not None:
            query = query.where(pending.c.issuer == issuer[0], pending.c.issuer_url == issuer[1])
        return [_pending(row) for row in await self._rows(query)]

    async def remove_publisher(self, publisher_id: str, *, by: str) -> Publisher | PendingPublisher | None:
        """Remove a publisher (with its principal, role and tokens) or a pending publisher; None if neither, or if
        another call took it meanwhile: on PostgreSQL a row read here may be gone by the DELETE, and a pending
        publisher that its first exchange made a publisher is not removed (the publisher it became publishes)."""
        async with self._transaction():
            row = await self._row(select(publishers).where(publishers.c.id == publisher_id))
            if row is not None:
                found: Publisher | PendingPublisher = _publisher(row)
                users = tables.users
                if not await self._execute(delete(users).where(users.c.id == publisher_id, users.c.kind == PUBLISHER)):
                    return None
                await self.audit(
                    "publisher.removed", user_name=principal_name(publisher_id), project=found.project, by=by
                )
                return found
            row = await self._row(
                select(pending, tables.users.c.name.label("added_by_name"))
                .join(tables.users, tables.users.c.id == pending.c.added_by)
                .where(pending.c.id == publisher_id)
            )
            if row is None:
                return None
            found = _pending(row)
            if not await self._execute(delete(pending).where(pending.c.id == publisher_id)):
                return None
            await self.audit("publisher.pending_removed", user_name=by, project=found.project, publisher=found.id)
            return found

    async def reify_pending(self, waiting: PendingPublisher) -> Publisher | None:
        """The pending publisher made a publisher of the project it creates, owned by whoever registered it; None
        when the project exists meanwhile (the pending publisher is gone then too, as on PyPI) or another exchange
        reified it first. `ProjectBeingCreated` while another user's upload holds the new project's name: the
        registrant takes the name as an upload does (`hold_claim`'s one statement, which a concurrent claim waits
        on), so the project is never made theirs under that upload."""
        async with self._transaction():
            if not await self._execute(delete(pending).where(pending.c.id == waiting.id)):
                return None
            if not await self.hold_claim(waiting.project, waiting.added_by):
                raise ProjectBeingCreated(
                    f"another user's upload is creating {waiting.project} right now; try again in a minute"
                )
            await self.release_claim(waiting.project, waiting.added_by)
            if not await self._ensure_project(waiting.project, waiting.display_name):
                await self.audit("publisher.pending_refused", user_name=waiting.added_by_name, project=waiting.project)
                return None
            now = time.time()
            await self._execute(
                insert(tables.roles).values(
                    project=waiting.project, user_id=waiting.added_by, role="owner", created=now
                )
            )
            await self.audit("project.claimed", user_name=waiting.added_by_name, project=waiting.project)
            return await self._new_publisher(
                waiting.project,
                waiting.issuer,
                waiting.kind,
                waiting.fields,
                issuer_url=waiting.issuer_url,
                by=waiting.added_by_name,
            )

    async def purge_pending_publishers(self, now: float) -> int:
        """Forget pending publishers past their expiry (30 days after they were added)."""
        return await self._execute(delete(pending).where(pending.c.expires <= now))


def _values(found: Publisher) -> dict[str, object]:
    return {
        "project": found.project,
        "issuer": found.issuer,
        "issuer_url": found.issuer_url,
        "kind": found.kind,
        "fields": json.dumps(found.fields, sort_keys=True),
        "added_by": found.added_by,
        "created": found.created,
    }


def _publisher(row: RowMapping) -> Publisher:
    return Publisher(
        id=row["id"],
        project=row["project"],
        issuer=row["issuer"],
        issuer_url=row["issuer_url"],
        kind=row["kind"],
        fields=json.loads(row["fields"]),
        added_by=row["added_by"],
        created=row["created"],
    )


def _pending(row: RowMapping) -> PendingPublisher:
    return PendingPublisher(
        id=row["id"],
        project=row["project"],
        display_name=row["display_name"],
        issuer=row["issuer"],
        issuer_url=row["issuer_url"],
        kind=row["kind"],
        fields=json.loads(row["fields"]),
        added_by=row["added_by"],
        added_by_name=row["added_by_name"],
        created=row["created"],
        expires=row["expires"],
    )
