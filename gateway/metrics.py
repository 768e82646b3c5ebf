"""Prometheus metrics, one registry per app (so tests and replicas never share counters), or, under
`serve --workers N`, the files every worker writes and the page adds up.

Labels are bounded codes only: never user names, project names, token ids or messages.

Several workers (`share_between_processes`, `Metrics(shared=…)`) use prometheus-client's multiprocess mode: each
process writes its values to memory-mapped files in one private directory, and whichever worker answers a scrape
reads them all, so a counter is the total of every worker, dead ones included, and never jumps between scrapes.
Gauges say how they add up (`multiprocess_mode`): what each worker holds (uploads, connections, cache) is the sum
over the workers alive; the index probe is the latest one any live worker made. Per-process collectors (CPU,
memory, garbage collection) cannot be added up and are left out then (docs/operations.md).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from gateway import __version__

PREFIX = "upload_gateway_"
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
SIZE_BUCKETS = tuple(float(2**exp) for exp in range(10, 31, 2))  # 1 KiB … 1 GiB
# What a throttled check was (`kind`: the sign-in steps, the confirmation page, a password upload) and which
# counter refused it (`scope`; `in_progress`: another second-factor check of the same sign-in was running).
# What a change-log entry was about (gateway.store.changelog's kinds; "other": one this version does not know).
CHANGE_KINDS = ("token", "user", "project", "other")
CHECK_KINDS = ("password", "totp", "recovery", "webauthn", "confirm", "confirm_totp", "totp_setup", "upload", "read")
THROTTLE_SCOPES = ("account_address", "account", "address")
# Why a connection was refused or cut off (gateway.connections): the codes of docs/errors.md.
CONNECTION_REFUSALS = ("too_many_connections", "header_timeout")
# Why a read of a private index was refused (gateway.read_access): the codes of docs/errors.md.
READ_REFUSALS = (
    "read_credentials_required",
    "bad_credentials",
    "invalid_credentials",
    "invalid_token",
    "revoked_token",
    "password_with_2fa",
    "read_not_granted",
    "read_outside_scope",
    "throttled",
    "password_checks_busy",
)


MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def share_between_processes(directory: Path) -> None:
    """From now on, in this process and those it forks, metrics keep their values in files under `directory`
    (an empty private directory): call it in the parent of the workers before any `Metrics` exists."""
    os.environ[MULTIPROCESS_VARIABLE] = str(directory)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def process_ended(directory: Path, pid: int) -> None:
    """A worker is gone: its in-flight gauges (the `live*` modes) stop counting; its counters stay in the totals."""
    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


class Metrics:
    def __init__(self, shared: Path | None = None) -> None:
        """`shared`: the directory given to `share_between_processes` (several workers); None: this process."""
        self.shared = shared
        self.registry = CollectorRegistry()
        if shared is None:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        reg = self.registry
        self.uploads = Counter(
            PREFIX + "uploads", "Upload requests by outcome and reason code", ["outcome", "reason"], registry=reg
        )
        self.upload_bytes = Counter(PREFIX + "upload_bytes", "File bytes of accepted uploads", registry=reg)
        self.upload_pumped_bytes = Counter(
            PREFIX + "upload_pumped_bytes",
            "Upload body bytes read by a pump thread from the client's socket itself, not the event loop",
            registry=reg,
        )
        self.upload_duration = Histogram(
            PREFIX + "upload_duration_seconds",
            "Time from request to answer for uploads",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.upload_size = Histogram(
            PREFIX + "upload_size_bytes", "Size of accepted distribution files", buckets=SIZE_BUCKETS, registry=reg
        )
        self.in_flight = Gauge(
            PREFIX + "uploads_in_flight",
            "Uploads being received or forwarded",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.upstream_duration = Histogram(
            PREFIX + "upstream_request_duration_seconds",
            "Time the index took to answer, by route",
            ["route"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.upstream_errors = Counter(
            PREFIX + "upstream_errors",
            "Index answers that were faults, by route and kind",
            ["route", "kind"],
            registry=reg,
        )
        self.token_verifications = Counter(
            PREFIX + "token_verifications", "API token verifications by result", ["result"], registry=reg
        )
        self.auth_failures = Counter(PREFIX + "auth_failures", "Failed authentications by kind", ["kind"], registry=reg)
        self.upstream_up = Gauge(
            PREFIX + "upstream_up",
            "1 when the index answered the last probe (every 15 s), else 0",
            registry=reg,
            multiprocess_mode="livemostrecent",
        )
        self.throttled = Counter(
            PREFIX + "throttled",
            "Password and code checks refused unchecked (429), by kind of check and the counter that refused",
            ["kind", "scope"],
            registry=reg,
        )
        self.throttle_locks = Counter(
            PREFIX + "throttle_locks",
            "Failures that filled a throttle counter (a lock began), by counter",
            ["scope"],
            registry=reg,
        )
        self.password_checks_refused = Counter(
            PREFIX + "password_checks_refused",
            "Password checks refused with 503 because every hashing thread and queue place was taken",
            registry=reg,
        )
        self.password_checks_pending = Gauge(
            PREFIX + "password_checks_pending",
            "Password checks running or waiting for a hashing thread",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.connections_open = Gauge(
            PREFIX + "connections_open",
            "Client connections open (admitted by the per-address cap)",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.connections_refused = Counter(
            PREFIX + "connections_refused",
            "Client connections the gateway refused or cut off, by reason code",
            ["reason"],
            registry=reg,
        )
        # Reads (issue #14): requests by route and representation, and the simple-page cache.
        self.reads = Counter(
            PREFIX + "reads",
            "Read requests the allowlist admitted, by route (root, project, file) and representation",
            ["route", "representation"],
            registry=reg,
        )
        self.read_cache_hits = Counter(
            PREFIX + "read_cache_hits", "Simple pages served from the cache (or a fetch shared)", ["kind"], registry=reg
        )
        self.read_cache_misses = Counter(
            PREFIX + "read_cache_misses", "Simple pages fetched from the index (absent or due)", ["kind"], registry=reg
        )
        self.read_cache_purges = Counter(
            PREFIX + "read_cache_purges", "Purges of a project's pages by an upload or removal", registry=reg
        )
        self.changes_applied = Counter(
            PREFIX + "changes_applied",
            "Entries of the store's change log applied to this process's caches",
            ["kind"],
            registry=reg,
        )
        self.change_log_failures = Counter(
            PREFIX + "change_log_failures", "Reads of the store's change log that failed", registry=reg
        )
        self.oidc_exchanges = Counter(
            PREFIX + "oidc_exchanges",
            "Trusted publishing exchanges of an ID token, by outcome (minted, or Warehouse's error code) and issuer",
            ["outcome", "issuer"],
            registry=reg,
        )
        self.read_cache_bytes = Gauge(
            PREFIX + "read_cache_bytes", "Bytes the simple-page cache holds", registry=reg, multiprocess_mode="livesum"
        )
        self.read_cache_pages = Gauge(
            PREFIX + "read_cache_pages", "Pages the simple-page cache holds", registry=reg, multiprocess_mode="livesum"
        )
        self.reads_refused = Counter(
            PREFIX + "reads_refused",
            "Reads of a private index (reads.access = authenticated) refused, by reason code",
            ["reason"],
            registry=reg,
        )
        # A gauge at 1, as prometheus-client writes an Info (which its multiprocess mode cannot carry).
        Gauge(
            PREFIX + "build_info",
            "Version of the gateway",
            ["version", "python"],
            registry=reg,
            multiprocess_mode="max",
        ).labels(__version__, platform.python_version()).set(1)
        self.workers = Gauge(
            PREFIX + "workers",
            "Worker processes serving (serve --workers N)",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.workers.set(1)
        self.worker_restarts = Counter(
            PREFIX + "worker_restarts", "Workers started again after one ended unexpectedly", registry=reg
        )
        # Series exist from the start, so rate() and increase() see their first event.
        for outcome, reason in (("accepted", "ok"), ("rejected", "invalid_credentials"), ("failed", "upstream_error")):
            self.uploads.labels(outcome, reason)
        for outcome in ("accepted", "rejected", "failed"):
            self.upload_duration.labels(outcome)
        for kind in ("password", "token"):
            self.auth_failures.labels(kind)
        for result in ("valid", "valid_cached", "invalid", "malformed", "unknown", "revoked"):
            self.token_verifications.labels(result)
        for kind in CHECK_KINDS:
            for scope in THROTTLE_SCOPES:
                self.throttled.labels(kind, scope)
        for kind in ("totp", "recovery", "webauthn"):
            self.throttled.labels(kind, "in_progress")
        for scope in THROTTLE_SCOPES:
            self.throttle_locks.labels(scope)
        for reason in CONNECTION_REFUSALS:
            self.connections_refused.labels(reason)
        for route, representation in (("root", "html"), ("project", "html"), ("project", "json"), ("file", "file")):
            self.reads.labels(route, representation)
        for kind in CHANGE_KINDS:
            self.changes_applied.labels(kind)
        for kind in ("html", "json"):
            self.read_cache_hits.labels(kind)
            self.read_cache_misses.labels(kind)
        for reason in READ_REFUSALS:
            self.reads_refused.labels(reason)
        for route in ("upload", "simple", "packages", "json", "other"):
            for kind in ("unreachable", "timeout", "protocol", "status_5xx"):
                self.upstream_errors.labels(route, kind)

    def page(self) -> bytes:
        """The text a scrape of `/metrics` gets: this registry, or the sum of every worker's files."""
        if self.shared is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.shared))  # type: ignore[no-untyped-call]
        return generate_latest(registry)
