"""Baseline: the whole schema as the legacy SQLite scripts left it at their last version (8), in types that mean
the same on PostgreSQL. A legacy SQLite database is stamped at this revision, then upgraded.

Revision ID: r0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("totp_secret", sa.LargeBinary),
        sa.Column("totp_last_step", sa.BigInteger),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("user_name", sa.Text),
        sa.Column("token_id", sa.Text),
        sa.Column("project", sa.Text),
        sa.Column("address", sa.Text),
        sa.Column("detail", sa.Text, nullable=False, server_default=sa.text("'{}'")),
        sqlite_autoincrement=True,
    )
    op.create_index("audit_at", "audit", ["at"])
    op.create_table(
        "recovery_codes",
        sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("code_hash", sa.Text, primary_key=True),
        sa.Column("used_at", sa.Double),
    )
    op.create_table(
        "webauthn_credentials",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("sign_count", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("last_used", sa.Double),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("secret", sa.LargeBinary, nullable=False),
        sa.Column("caveats", sa.Text, nullable=False),
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("last_used", sa.Double),
        sa.Column("expires", sa.Double),
        sa.Column("revoked", sa.Double),
        sa.Column("permissions", sa.Text, nullable=False, server_default=sa.text("'upload'")),
        sa.CheckConstraint("permissions IN ('upload', 'read', 'read upload')", name="tokens_permissions"),
    )
    op.create_index("tokens_user", "tokens", ["user_id"])
    op.create_table(
        "projects",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("created", sa.Double, nullable=False),
    )
    op.create_table(
        "roles",
        sa.Column("project", sa.Text, sa.ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("created", sa.Double, nullable=False),
        sa.CheckConstraint("role IN ('owner', 'maintainer')", name="roles_role"),
    )
    op.create_table(
        "files",
        sa.Column("filename", sa.Text, primary_key=True),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("blake2_256", sa.Text, nullable=False),
        sa.Column("uploaded", sa.Double, nullable=False),
        sa.Column("user_name", sa.Text),
        sa.Column("token_id", sa.Text),
    )
    op.create_index("files_project", "files", ["project"])
    op.create_index("files_folded", "files", [sa.text("lower(filename)")])
    op.create_table(
        "web_sessions",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("expires", sa.Double, nullable=False),
    )
    op.create_index("web_sessions_expires", "web_sessions", ["expires"])
    op.create_table(
        "project_claims",
        sa.Column("project", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("holders", sa.BigInteger, nullable=False),
        sa.Column("expires", sa.Double, nullable=False),
    )
    op.create_table(
        "size_reservations",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("expires", sa.Double, nullable=False),
    )
    op.create_index("size_reservations_project", "size_reservations", ["project"])
    op.create_table(
        "throttle_streaks",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("failures", sa.BigInteger, nullable=False),
        sa.Column("last", sa.Double, nullable=False),
        sa.Column("holder", sa.Text, nullable=False),
    )
    op.create_index("throttle_streaks_last", "throttle_streaks", ["last"])
    op.create_table(
        "throttle_buckets",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("level", sa.Double, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("holder", sa.Text, nullable=False),
    )
    op.create_index("throttle_buckets_at", "throttle_buckets", ["at"])
    op.create_table(
        "throttle_holds",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("expires", sa.Double, nullable=False),
    )
