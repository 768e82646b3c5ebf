"""Publishers bound to their issuer's URL, not only its configured name (issue #19): an issuer's name pointed at
another URL must not hand that host the publishers registered for the old one.

Publishers of r0004 are bound to the URL their issuer's name has in the configuration `db upgrade` runs with
(what they were trusted for until now); those of an issuer it does not configure keep "" and match no token until
their owners add them again. `db upgrade` says how many it bound to which URL, so that an operator who had pointed
a name at another host before upgrading sees that those rows now trust it.

Revision ID: r0005
Revises: r0004
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import context, op

revision = "r0005"
down_revision: str | None = "r0004"
branch_labels: str | None = None
depends_on: str | None = None

TABLES = {"publishers": "publishers_unique", "pending_publishers": "pending_publishers_unique"}


def upgrade() -> None:
    issuer_urls: dict[str, str] = context.config.attributes.get("issuer_urls", {})
    bound = dict.fromkeys(issuer_urls, 0)
    unbound = 0
    for table, unique in TABLES.items():
        # SQLite changes a constraint by copying the table, which reflects the tables it refers to: `users` has an
        # index on an expression (r0002), which reflection skips with a warning. The copy does not touch `users`.
        with warnings.catch_warnings(), op.batch_alter_table(table) as batch:
            warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
            batch.add_column(sa.Column("issuer_url", sa.Text(), nullable=False, server_default=""))
            batch.drop_constraint(unique, type_="unique")
            batch.create_unique_constraint(unique, ["project", "issuer", "issuer_url", "kind", "fields"])
        rows = sa.table(table, sa.column("issuer"), sa.column("issuer_url"))
        for name, url in issuer_urls.items():
            binding = rows.update().where(rows.c.issuer == name, rows.c.issuer_url == "").values(issuer_url=url)
            bound[name] += op.get_bind().execute(binding).rowcount
        left = sa.select(sa.func.count()).select_from(rows).where(rows.c.issuer_url == "")
        unbound += int(op.get_bind().execute(left).scalar_one())
    # Said by `db upgrade`: an operator who had pointed a name at another host already sees what the rows trust.
    said = [f"{count} of {name!r} to {issuer_urls[name]}" for name, count in bound.items() if count]
    if unbound:
        said.append(f"{unbound} of an issuer not configured to none (refused until added again)")
    if said:
        note = f"trusted publishers bound to their issuer's URL: {', '.join(said)}"
        context.config.attributes.setdefault("notes", []).append(note)
