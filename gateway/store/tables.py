"""The store's tables as SQLAlchemy `Table` objects, one `MetaData`: what the queries of every aggregate name, and
what the migrations (`gateway.store.migrations`) must build, on SQLite and PostgreSQL alike.

The types mean the same on both: `Text` for names and JSON, `Double` for times (epoch seconds with a fraction),
`BigInteger` for counts, sizes and whole epoch seconds, `LargeBinary` for sealed secrets and keys. User names are
unique in any letter case through a unique index on `lower(name)`, and looked up by it (SQLite's `lower` folds
ASCII only, PostgreSQL's every script: both refuse "Alice" beside "alice"), against the name typed as Python
folds it (`Users.get_user`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)

metadata = MetaData()

# SQLite's AUTOINCREMENT needs the column to be its INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit serial.
_AUDIT_ID = BigInteger().with_variant(Integer(), "sqlite")

users = Table(
    "users",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("totp_secret", LargeBinary),
    Column("totp_last_step", BigInteger),
    # "person", or "publisher": a trusted publisher's own principal (`gateway.store.publishers`), which holds its
    # project's role and its minted tokens, and which no name lookup, sign-in or password ever finds.
    Column("kind", Text, nullable=False, server_default=text("'person'")),
)
Index("users_name_folded", func.lower(users.c.name), unique=True)

# What other gateway processes must see, in commit order (`gateway.store.changelog`, `gateway.changes`).
changes = Table(
    "changes",
    metadata,
    Column("serial", _AUDIT_ID, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("kind", Text, nullable=False),
    Column("key", Text, nullable=False),
    sqlite_autoincrement=True,
)

# What may be used once only, across every process and replica: a WebAuthn challenge now, an OIDC token's `jti` next.
used_once = Table(
    "used_once",
    metadata,
    Column("purpose", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("expires", Double, nullable=False),
    Index("used_once_expires", "expires"),
)

# The store's own facts: the server secret's fingerprint (`gateway.store.settings`).
settings = Table(
    "settings",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", _AUDIT_ID, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("event", Text, nullable=False),
    Column("user_name", Text),
    Column("token_id", Text),
    Column("project", Text),
    Column("address", Text),
    Column("detail", Text, nullable=False, server_default=text("'{}'")),
    Index("audit_at", "at"),
    sqlite_autoincrement=True,
)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("user_id", Text, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("code_hash", Text, primary_key=True),
    Column("used_at", Double),
)

webauthn_credentials = Table(
    "webauthn_credentials",
    metadata,
    Column("id", Text, primary_key=True),
    Column("user_id", Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("public_key", LargeBinary, nullable=False),
    Column("sign_count", BigInteger, nullable=False, server_default=text("0")),
    Column("created", Double, nullable=False),
    Column("last_used", Double),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Text, primary_key=True),
    Column("user_id", Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("description", Text, nullable=False),
    Column("secret", LargeBinary, nullable=False),
    Column("caveats", Text, nullable=False),
    Column("created", Double, nullable=False),
    Column("last_used", Double),
    Column("expires", Double),
    Column("revoked", Double),
    Column("permissions", Text, nullable=False, server_default=text("'upload'")),
    Column("run", Text),  # a minted token's CI run (JSON: ref, sha, repository), for its uploads' audit
    CheckConstraint("permissions IN ('upload', 'read', 'read upload')", name="tokens_permissions"),
    Index("tokens_user", "user_id"),
)

projects = Table(
    "projects",
    metadata,
    Column("name", Text, primary_key=True),
    Column("id", Text, nullable=False, unique=True),
    Column("display_name", Text, nullable=False),
    Column("created", Double, nullable=False),
)

roles = Table(
    "roles",
    metadata,
    Column("project", Text, ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Text, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", Text, nullable=False),
    Column("created", Double, nullable=False),
    CheckConstraint("role IN ('owner', 'maintainer')", name="roles_role"),
)

files = Table(
    "files",
    metadata,
    Column("filename", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("blake2_256", Text, nullable=False),
    Column("uploaded", Double, nullable=False),
    Column("user_name", Text),
    Column("token_id", Text),
    Index("files_project", "project"),
)
Index("files_folded", func.lower(files.c.filename))

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("key", Text, primary_key=True),
    Column("data", Text, nullable=False),
    Column("expires", Double, nullable=False),
    Index("web_sessions_expires", "expires"),
)

project_claims = Table(
    "project_claims",
    metadata,
    Column("project", Text, primary_key=True),
    Column("user_id", Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("holders", BigInteger, nullable=False),
    Column("expires", Double, nullable=False),
)

size_reservations = Table(
    "size_reservations",
    metadata,
    Column("id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("expires", Double, nullable=False),
    Index("size_reservations_project", "project"),
)

throttle_streaks = Table(
    "throttle_streaks",
    metadata,
    Column("key", Text, primary_key=True),
    Column("failures", BigInteger, nullable=False),
    Column("last", Double, nullable=False),
    Column("holder", Text, nullable=False),
    Index("throttle_streaks_last", "last"),
)

throttle_buckets = Table(
    "throttle_buckets",
    metadata,
    Column("key", Text, primary_key=True),
    Column("level", Double, nullable=False),
    Column("at", Double, nullable=False),
    Column("holder", Text, nullable=False),
    Index("throttle_buckets_at", "at"),
)

throttle_holds = Table(
    "throttle_holds",
    metadata,
    Column("key", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("expires", Double, nullable=False),
)

# Trusted publishers (issue #19): a CI workflow that may mint short-lived upload tokens for one project. Its id is
# its principal's user id; the principal is removed with it (and its role and tokens with the principal).
publishers = Table(
    "publishers",
    metadata,
    Column("id", Text, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("project", Text, ForeignKey("projects.name", ondelete="CASCADE"), nullable=False),
    Column("issuer", Text, nullable=False),  # the configured issuer's name
    Column("kind", Text, nullable=False),
    Column("fields", Text, nullable=False),  # JSON, `gateway.oidc.claims.publisher_fields`
    Column("added_by", Text),
    Column("created", Double, nullable=False),
    # The issuer's URL when the publisher was added: only that issuer's tokens match it (r0005).
    Column("issuer_url", Text, nullable=False, server_default=""),
    UniqueConstraint("project", "issuer", "issuer_url", "kind", "fields", name="publishers_unique"),
    Index("publishers_issuer", "issuer"),
)

# A publisher for a project that does not exist yet: its first exchange creates the project, owned by `added_by`.
pending_publishers = Table(
    "pending_publishers",
    metadata,
    Column("id", Text, primary_key=True),
    Column("project", Text, nullable=False),  # normalized
    Column("display_name", Text, nullable=False),
    Column("issuer", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("fields", Text, nullable=False),
    Column("added_by", Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created", Double, nullable=False),
    Column("expires", Double, nullable=False),
    Column("issuer_url", Text, nullable=False, server_default=""),
    UniqueConstraint("project", "issuer", "issuer_url", "kind", "fields", name="pending_publishers_unique"),
    Index("pending_publishers_issuer", "issuer"),
)
