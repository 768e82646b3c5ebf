"""What several gateway processes on one store share beyond the accounts: the change log (a revoked token, a
changed user or project, under a serial that grows in commit order), things used once only (a WebAuthn challenge,
an OIDC `jti`), and the fingerprint of the server secret the store's tokens were made with.

Revision ID: r0003
Revises: r0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0003"
down_revision: str | None = "r0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("serial", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "used_once",
        sa.Column("purpose", sa.Text(), primary_key=True),
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("expires", sa.Double(), nullable=False),
    )
    op.create_index("used_once_expires", "used_once", ["expires"])
    op.create_table(
        "settings",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
