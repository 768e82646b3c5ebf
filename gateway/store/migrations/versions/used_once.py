"""What may be used once only, across every process and replica (a WebAuthn challenge, an OIDC token's `jti`).

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
    op.create_table(
        "used_once",
        sa.Column("purpose", sa.Text(), primary_key=True),
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("expires", sa.Double(), nullable=False),
    )
    op.create_index("used_once_expires", "used_once", ["expires"])
