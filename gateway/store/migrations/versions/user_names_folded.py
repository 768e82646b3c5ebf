"""User names unique in any letter case on every backend: a unique index on lower(name), which the lookups use.
The legacy SQLite column's COLLATE NOCASE did this on SQLite alone (and stays, harmless, on adopted databases).

Revision ID: r0002
Revises: r0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0002"
down_revision: str | None = "r0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("users_name_folded", "users", [sa.text("lower(name)")], unique=True)
