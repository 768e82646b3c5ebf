"""The SQLite scripts of the gateway before its Alembic migrations, frozen: a database they made is at
`PRAGMA user_version` = its last script's number. `upload-gateway db upgrade` runs the scripts such a database
lacks, then adopts it as the baseline revision (`gateway.store.schema.upgrade`); nothing else reads them."""

from __future__ import annotations

LEGACY_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        event TEXT NOT NULL,
        user_name TEXT,
        token_id TEXT,
        project TEXT,
        address TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_at ON audit (at);
    """,
    """
    ALTER TABLE users ADD COLUMN totp_secret BLOB;
    ALTER TABLE users ADD COLUMN totp_last_step INTEGER;
    CREATE TABLE recovery_codes (
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        code_hash TEXT NOT NULL,
        used_at REAL,
        PRIMARY KEY (user_id, code_hash)
    );
    CREATE TABLE webauthn_credentials (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        public_key BLOB NOT NULL,
        sign_count INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        last_used REAL
    );
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        description TEXT NOT NULL,
        secret BLOB NOT NULL,
        caveats TEXT NOT NULL,
        created REAL NOT NULL,
        last_used REAL,
        expires REAL,
        revoked REAL
    );
    CREATE INDEX tokens_user ON tokens (user_id);
    CREATE TABLE projects (
        name TEXT PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE roles (
        project TEXT NOT NULL REFERENCES projects (name) ON DELETE CASCADE,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('owner', 'maintainer')),
        created REAL NOT NULL,
        PRIMARY KEY (project, user_id)
    );
    """,
    """
    CREATE TABLE files (
        filename TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        blake2_256 TEXT NOT NULL,
        uploaded REAL NOT NULL,
        user_name TEXT,
        token_id TEXT
    );
    CREATE INDEX files_project ON files (project);
    """,
    """
    CREATE TABLE web_sessions (
        key TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        expires REAL NOT NULL
    );
    CREATE INDEX web_sessions_expires ON web_sessions (expires);
    """,
    """
    CREATE TABLE project_claims (
        project TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        holders INTEGER NOT NULL,
        expires REAL NOT NULL
    );
    """,
    """
    CREATE TABLE size_reservations (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        size INTEGER NOT NULL,
        expires REAL NOT NULL
    );
    CREATE INDEX size_reservations_project ON size_reservations (project);
    CREATE INDEX files_folded ON files (lower(filename));
    """,
    # --- Private reads (issue #14): what each token may do, granted here (caveats only narrow it) ---
    # Existing tokens keep what they could do: upload only.
    """
    ALTER TABLE tokens ADD COLUMN permissions TEXT NOT NULL DEFAULT 'upload'
        CHECK (permissions IN ('upload', 'read', 'read upload'));
    """,
    # Issue #13: throttle counters and second-factor holds; keys are keyed hashes (gateway/throttle.py).
    """
    CREATE TABLE throttle_streaks (
        key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last REAL NOT NULL,
        holder TEXT NOT NULL
    );
    CREATE INDEX throttle_streaks_last ON throttle_streaks (last);
    CREATE TABLE throttle_buckets (
        key TEXT PRIMARY KEY,
        level REAL NOT NULL,
        at REAL NOT NULL,
        holder TEXT NOT NULL
    );
    CREATE INDEX throttle_buckets_at ON throttle_buckets (at);
    CREATE TABLE throttle_holds (
        key TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires REAL NOT NULL
    );
    """,
)
