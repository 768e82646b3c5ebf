"""The default of every configuration key: what an empty file and no `GATEWAY_*` variable mean.

`config/gateway.toml` repeats every key with its default (`tests/test_config.py` checks that the file loads equal to
these); `gateway.config` merges the file and the environment over them, then validates.
"""

from __future__ import annotations

from typing import Any

# `limits.*` keys beside max_file_size, about connections, timeouts and slow clients (issue #13; docs/operations.md
# has a section of the same name). The durations are whole seconds.
CLIENT_LIMIT_DEFAULTS: dict[str, Any] = {
    "header_timeout": "10s",
    "keepalive_timeout": "15s",
    "max_connections_per_address": 64,
    "upload_grace": "30s",
    "min_upload_rate": "8KiB",
    "upload_deadline": "1h",
}

# Who may read, the read path's cache and page limits, and the index's file roots (issue #14; docs/operations.md,
# "Reads" and "Private indexes").
READS_DEFAULTS: dict[str, Any] = {
    "access": "public",
    "cache_ttl": "30s",
    "cache_size": "64MiB",
    "max_page_size": "8MiB",
    "file_roots": [],
}

# Trusted publishing (issue #19; docs/operations.md, "Trusted publishing: issuers"): the keys of each
# [[oidc.issuers]] table; name, url and kind have no default that could work, so "" is refused.
OIDC_ISSUER_DEFAULTS: dict[str, Any] = {"name": "", "url": "", "kind": "", "algorithms": ["RS256"], "jwks_url": ""}

DEFAULTS: dict[str, dict[str, Any]] = {
    "server": {
        "listen": "127.0.0.1:8080",
        "public_url": "",
        "trusted_proxies": [],
        "workers": 1,
        "tls_cert": "",
        "tls_key": "",
    },
    "upstream": {
        "url": "embedded",
        "upload_url": "",
        "simple_url": "",
        "username": "",
        "password_file": "",
        "data_dir": "data/packages",
        "timeout": "300s",
        "buffer_uploads": False,
    },
    "store": {"url": "sqlite:///data/gateway.db"},
    "tokens": {"prefix": "pypi", "secret_file": "data/secret.key", "max_lifetime": ""},
    "policy": {
        "password_uploads": "deny-2fa",
        "new_projects": "claim",
        "allowed_actions": ["file_upload"],
        "platform_tags": "pypi",
    },
    "limits": {
        "max_file_size": "100MiB",
        "max_project_size": "",
        "read_timeout": "60s",
        **CLIENT_LIMIT_DEFAULTS,
        "max_uploads_per_user": 8,
        "max_uploads": 64,
    },
    "logging": {"level": "info", "format": "text", "audit_file": ""},
    "throttle": {
        "failures": 5,
        "lock": "1m",
        "max_lock": "15m",
        "account_failures": 100,
        "account_window": "1h",
        "address_failures": 50,
        "address_window": "5m",
        "password_checks": 2,
        "password_check_queue": 16,
    },
    "reads": dict(READS_DEFAULTS),
    # No issuer: trusted publishing is off. The issuers are [[oidc.issuers]] tables (OIDC_ISSUER_DEFAULTS).
    "oidc": {"audience": "upload-gateway", "issuers": []},
}
