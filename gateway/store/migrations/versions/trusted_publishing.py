"""Trusted publishing (issue #19): publishers and pending publishers, the principal kind of a user, and a minted
token's CI run.

Revision ID: r0004
Revises: r0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0004"
down_revision: str | None = "r0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("kind", sa.Text(), nullable=False, server_default=sa.text("'person'")))
    op.add_column("tokens", sa.Column("run", sa.Text()))
    op.create_table(
        "publishers",
        sa.Column("id", sa.Text(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("project", sa.Text(), sa.ForeignKey("projects.name", ondelete="CASCADE"), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("added_by", sa.Text()),
        sa.Column("created", sa.Double(), nullable=False),
        sa.UniqueConstraint("project", "issuer", "kind", "fields", name="publishers_unique"),
    )
    op.create_index("publishers_issuer", "publishers", ["issuer"])
    op.create_table(
        "pending_publishers",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("added_by", sa.Text(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("expires", sa.Double(), nullable=False),
        sa.UniqueConstraint("project", "issuer", "kind", "fields", name="pending_publishers_unique"),
    )
    op.create_index("pending_publishers_issuer", "pending_publishers", ["issuer"])
