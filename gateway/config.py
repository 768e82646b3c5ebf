"""Configuration: read once from TOML and `GATEWAY_<SECTION>_<KEY>` variables into a frozen, validated object.

A bad value stops start-up with one line that names the key and what is allowed (`ConfigError`). One file decides
where the store is, whatever the working directory: `find_config` looks for it in one order for every command, and
relative paths are made absolute against the file's directory (those of `GATEWAY_*` variables against the working
directory, as for any command-line argument).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from gateway.config_defaults import DEFAULTS, OIDC_ISSUER_DEFAULTS
from gateway.config_values import (
    ConfigError as ConfigError,
)
from gateway.config_values import (
    boolean,
    check_http_url,
    check_https_url,
    choice,
    count,
    default_public_url,
    duration,
    is_list,
    networks,
    optional_path,
    parse_listen,
    parse_size,
    text,
    text_list,
)
from gateway.config_values import (
    parse_duration as parse_duration,
)

DEFAULT_PATH = Path("config/gateway.toml")
CONFIG_VARIABLE = "GATEWAY_CONFIG"
# The keys that name files or directories; store.url's sqlite path too (`_SQLITE`).
PATH_KEYS = (
    ("server", "tls_cert"),
    ("server", "tls_key"),
    ("upstream", "password_file"),
    ("upstream", "data_dir"),
    ("tokens", "secret_file"),
    ("logging", "audit_file"),
)
_SQLITE = "sqlite:///"
_POSTGRESQL = ("postgresql", "postgresql+psycopg")


@dataclass(frozen=True)
class TLSFiles:
    """`server.tls_cert` and `server.tls_key`, absolute: set together or not at all. Only named here; `serve`
    reads them (`gateway.tls.server_context`), so that the other commands run without access to the key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    public_url: str
    trusted_proxies: tuple[str, ...]
    workers: int  # processes `serve` runs (gateway.workers); 1: the gateway is one process
    tls: TLSFiles | None  # the gateway serves https itself (gateway.tls); None: plain http


@dataclass(frozen=True)
class UpstreamConfig:
    url: str
    upload_url: str
    simple_url: str
    username: str
    password_file: Path | None
    data_dir: Path
    timeout: float
    buffer_uploads: bool

    @property
    def embedded(self) -> bool:
        return self.url == "embedded"


@dataclass(frozen=True)
class StoreConfig:
    """`url`: `sqlite:///PATH` (then `path` is the file, absolute) or `postgresql://user[:password]@host:port/db`.

    The URL may hold the database password: it is kept out of the repr, and `shown` is what errors and banners
    print (the password as `***`)."""

    url: str = field(repr=False)
    path: Path | None = None

    @property
    def shown(self) -> str:
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"StoreConfig(url={self.shown!r}, path={self.path!r})"


@dataclass(frozen=True)
class TokensConfig:
    prefix: str
    secret_file: Path
    max_lifetime: int | None


@dataclass(frozen=True)
class PolicyConfig:
    password_uploads: str
    new_projects: str
    allowed_actions: frozenset[str]
    platform_tags: Literal["pypi", "any"]


# --- Connections, timeouts and slow clients (issue #13; docs/operations.md has a section of the same name) ---
# `limits.*` keys beside max_file_size (their defaults: `CLIENT_LIMIT_DEFAULTS`). The durations are whole seconds.
@dataclass(frozen=True)
class ClientLimits:
    """How long and how many: what keeps slow or numerous connections from holding the gateway or the index."""

    header_timeout: float  # a request's line and headers, and any body but an upload's, must arrive in this time
    keepalive_timeout: float  # an idle keep-alive connection is closed after this
    max_connections_per_address: int  # concurrent connections per client address (IPv6: per /64); 0 = no cap
    upload_grace: float  # an upload's rate is judged after this much waiting for it, over a window this long
    min_upload_rate: int  # bytes per second
    upload_deadline: float  # the whole upload body must arrive within this time


def _client_limits(raw: dict[str, Any]) -> ClientLimits:
    connections = raw["max_connections_per_address"]
    if isinstance(connections, str) and connections.strip().isdigit():
        connections = int(connections)
    if not isinstance(connections, int) or isinstance(connections, bool) or connections < 0:
        raise ConfigError(
            f"limits.max_connections_per_address: {connections!r} must be a whole number (0 turns the cap off)"
        )
    grace = float(duration("limits.upload_grace", raw["upload_grace"]))
    deadline = float(duration("limits.upload_deadline", raw["upload_deadline"]))
    if deadline < grace:
        raise ConfigError(f"limits.upload_deadline: {raw['upload_deadline']!r} must not be shorter than upload_grace")
    return ClientLimits(
        header_timeout=float(duration("limits.header_timeout", raw["header_timeout"])),
        keepalive_timeout=float(duration("limits.keepalive_timeout", raw["keepalive_timeout"])),
        max_connections_per_address=connections,
        upload_grace=grace,
        min_upload_rate=parse_size("limits.min_upload_rate", raw["min_upload_rate"]),
        upload_deadline=deadline,
    )


# --- end of connections, timeouts and slow clients ---


# --- Reads (issue #14; docs/operations.md, "Reads" and "Private indexes") ---
# Who may read (`access`), the read path's cache and page limits, and the index's file roots.
READ_ACCESS = ("public", "authenticated")


@dataclass(frozen=True)
class ReadsConfig:
    """Who may read the index through the gateway (anyone, or Basic credentials: a password or a read token), what
    the read path serves, and how long it trusts what it cached."""

    access: Literal["public", "authenticated"]
    cache_ttl: float  # a cached simple page not purged by an upload is revalidated with the index after this
    cache_size: int  # bytes of rewritten pages held in memory (HTML and JSON)
    max_page_size: int  # an index page larger than this is refused (502), not rewritten
    file_roots: tuple[str, ...]  # the index's file URLs (absolute, or relative to upstream.url); () = its default


def _reads(raw: dict[str, Any]) -> ReadsConfig:
    access = choice(raw, "reads", "access", READ_ACCESS)
    max_page = parse_size("reads.max_page_size", raw["max_page_size"])
    if max_page > 32 * 2**20:
        raise ConfigError(f"reads.max_page_size: {raw['max_page_size']!r} must be at most 32MiB")
    roots = tuple(text_list(raw, "reads", "file_roots"))
    for root in roots:
        if "://" in root:
            check_http_url("reads.file_roots", root)
    return ReadsConfig(
        access="authenticated" if access == "authenticated" else "public",
        cache_ttl=float(duration("reads.cache_ttl", raw["cache_ttl"])),
        cache_size=parse_size("reads.cache_size", raw["cache_size"]),
        max_page_size=max_page,
        file_roots=roots,
    )


# --- end of reads ---


# --- Trusted publishing (issue #19; docs/operations.md, "Trusted publishing: issuers") ---
# The OIDC issuers whose ID tokens the exchange takes, and the audience they must be made out to.
IssuerKind = Literal["github", "gitlab", "forgejo", "generic"]
OIDC_KINDS: tuple[IssuerKind, ...] = ("github", "gitlab", "forgejo", "generic")
# Asymmetric signatures only: an issuer's public keys are public, so any HMAC (HS*) "key" would be known to
# everyone, and "none" is no signature at all.
OIDC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
_AUDIENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ISSUER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class OIDCIssuer:
    """One issuer an operator trusts: `url` is exactly the `iss` its tokens carry (trailing slash included),
    `name` what publishers are registered against (`publisher add --issuer NAME`)."""

    name: str
    url: str
    kind: IssuerKind
    algorithms: tuple[str, ...] = ("RS256",)
    jwks_url: str = ""  # "" = the `jwks_uri` of {url}/.well-known/openid-configuration


@dataclass(frozen=True)
class OIDCConfig:
    """Trusted publishing is on when at least one issuer is configured."""

    audience: str = "upload-gateway"
    issuers: tuple[OIDCIssuer, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.issuers)

    def issuer_named(self, name: str) -> OIDCIssuer | None:
        return next((issuer for issuer in self.issuers if issuer.name == name), None)

    def issuer_at(self, url: str) -> OIDCIssuer | None:
        """The issuer whose URL is exactly `url` (a token's `iss`)."""
        return next((issuer for issuer in self.issuers if issuer.url == url), None)


def _oidc(raw: dict[str, Any]) -> OIDCConfig:
    audience = text(raw, "oidc", "audience")
    if not _AUDIENCE.fullmatch(audience):
        raise ConfigError(
            f"oidc.audience: {audience!r} must be one plain word of at most 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (GitLab names its variable after it)"
        )
    tables = raw["issuers"]
    if not is_list(tables) or not all(isinstance(table, dict) for table in tables):
        raise ConfigError("oidc.issuers: must be [[oidc.issuers]] tables in the configuration file")
    issuers = tuple(_issuer(index, table) for index, table in enumerate(tables))
    for index, issuer in enumerate(issuers):
        for earlier in issuers[:index]:
            if issuer.name == earlier.name:
                raise ConfigError(f"oidc.issuers[{index}].name: {issuer.name!r} is already the name of another issuer")
            if issuer.url == earlier.url:
                raise ConfigError(
                    f"oidc.issuers[{index}].url: {issuer.url!r} is already the URL of issuer {earlier.name!r}"
                )
    return OIDCConfig(audience=audience, issuers=issuers)


def _issuer(index: int, table: dict[str, Any]) -> OIDCIssuer:
    where = f"oidc.issuers[{index}]"
    for key in table:
        if key not in OIDC_ISSUER_DEFAULTS:
            raise ConfigError(f"{where}.{key}: unknown key; allowed: {', '.join(OIDC_ISSUER_DEFAULTS)}")
    raw = {**OIDC_ISSUER_DEFAULTS, **table}
    for key in ("name", "url", "kind"):
        if not text(raw, where, key):
            raise ConfigError(f"{where}.{key}: required")
    name = text(raw, where, "name")
    if not _ISSUER_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}.name: {name!r} must be at most 64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    url = text(raw, where, "url")
    check_https_url(f"{where}.url", url)
    jwks_url = text(raw, where, "jwks_url")
    if jwks_url:
        check_https_url(f"{where}.jwks_url", jwks_url)
    kind = cast(IssuerKind, choice(raw, where, "kind", OIDC_KINDS))
    algorithms = text_list(raw, where, "algorithms")
    if not algorithms:
        raise ConfigError(f"{where}.algorithms: must name at least one of {', '.join(OIDC_ALGORITHMS)}")
    for algorithm in algorithms:
        if algorithm not in OIDC_ALGORITHMS:
            raise ConfigError(
                f"{where}.algorithms: {algorithm!r} not allowed (never HS* or none: only asymmetric signatures); "
                f"choose from {', '.join(OIDC_ALGORITHMS)}"
            )
    return OIDCIssuer(name=name, url=url, kind=kind, algorithms=tuple(dict.fromkeys(algorithms)), jwks_url=jwks_url)


# --- end of trusted publishing ---


@dataclass(frozen=True)
class LimitsConfig:
    max_file_size: int
    max_project_size: int | None
    read_timeout: float
    max_uploads_per_user: int
    max_uploads: int
    clients: ClientLimits


# ---- [throttle] (issue #13): wrong passwords and codes, and the password-check pool; rules in gateway/throttle.py.
@dataclass(frozen=True)
class ThrottleConfig:
    failures: int  # wrong passwords or codes in a row for one account from one address, then a lock
    lock: int  # seconds of the first lock; doubled by each further failure
    max_lock: int
    account_failures: int  # per account, all addresses, in any account_window
    account_window: int
    address_failures: int  # per address, all accounts, in any address_window
    address_window: int
    password_checks: int  # threads hashing passwords at once
    password_check_queue: int  # checks that may wait for one; more are refused with 503


# ---- end of [throttle]


@dataclass(frozen=True)
class LoggingConfig:
    level: str
    format: str
    audit_file: Path | None


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    upstream: UpstreamConfig
    store: StoreConfig
    tokens: TokensConfig
    policy: PolicyConfig
    limits: LimitsConfig
    logging: LoggingConfig
    throttle: ThrottleConfig
    reads: ReadsConfig
    oidc: OIDCConfig


def find_config(given: Path | None, environ: Mapping[str, str], cwd: Path | None = None) -> Path | None:
    """The configuration file every command uses: `--config`, then `$GATEWAY_CONFIG`, then `config/gateway.toml`
    under the working directory when it exists; None when there is none (only `serve` runs on the defaults)."""
    if given is not None:
        return given
    if environ.get(CONFIG_VARIABLE):
        return Path(environ[CONFIG_VARIABLE])
    default = (cwd or Path.cwd()) / DEFAULT_PATH
    return default if default.exists() else None


def load_config(
    path: Path | None = None, environ: Mapping[str, str] | None = None, *, cwd: Path | None = None
) -> Config:
    """Merge defaults, the TOML file and environment overrides, then validate.

    Relative paths become absolute: the file's and the defaults' against the file's directory (the defaults'
    against `cwd` when there is no file), the environment's against `cwd` (default: the working directory).
    """
    here = Path(os.path.abspath(cwd or Path.cwd()))
    raw = {section: dict(values) for section, values in DEFAULTS.items()}
    base = Path(os.path.abspath(path)).parent if path is not None else here
    bases = {key: base for key in (*PATH_KEYS, ("store", "url"))}
    if path is not None:
        for section, values in _read_toml(path).items():
            if section not in raw or not isinstance(values, dict):
                raise ConfigError(f"{path}: unknown section [{section}]; allowed: {', '.join(raw)}")
            for key, value in values.items():
                if key not in raw[section]:
                    raise ConfigError(f"{section}.{key}: unknown key; allowed: {', '.join(raw[section])}")
                raw[section][key] = value
    for name, value in (environ or {}).items():
        if (key := _apply_env(raw, name, value)) in bases:
            bases[key] = here
    for (section, key), directory in bases.items():
        raw[section][key] = _anchored(raw[section][key], directory, scheme=_SQLITE if section == "store" else "")
    return _build(raw)


def _anchored(value: Any, directory: Path, *, scheme: str) -> Any:
    """A relative path (after `scheme`, for a URL) made absolute against `directory`; anything else as it was
    (`_build` says what is wrong with it)."""
    if not isinstance(value, str) or not value.strip() or not value.strip().startswith(scheme):
        return value
    path = value.strip()[len(scheme) :]
    if not path or Path(path).is_absolute():
        return value
    return scheme + os.path.normpath(directory / path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found (pass --config or set {CONFIG_VARIABLE})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _apply_env(raw: dict[str, dict[str, Any]], name: str, value: str) -> tuple[str, str] | None:
    """Apply one `GATEWAY_<SECTION>_<KEY>` variable; the (section, key) it set, if any."""
    if not name.startswith("GATEWAY_") or name == CONFIG_VARIABLE:
        return None
    if name == "GATEWAY_OIDC_ISSUERS":
        raise ConfigError(f"{name}: the issuers cannot be set from the environment; write [[oidc.issuers]] in the file")
    for section, values in raw.items():
        prefix = f"GATEWAY_{section.upper()}_"
        if name.startswith(prefix):
            key = name[len(prefix) :].lower()
            if key not in values:
                raise ConfigError(f"{name}: unknown key {section}.{key}; allowed: {', '.join(values)}")
            values[key] = [item.strip() for item in value.split(",") if item.strip()] if is_list(values[key]) else value
            return section, key
    return None


def _build(raw: dict[str, dict[str, Any]]) -> Config:
    server, upstream = raw["server"], raw["upstream"]
    host, port = parse_listen(text(server, "server", "listen"))
    tls = _tls(server)
    public_url = text(server, "server", "public_url") or default_public_url(host, port, https=tls is not None)
    check_http_url("server.public_url", public_url)
    if tls is not None and urlsplit(public_url).scheme != "https":
        raise ConfigError(
            f"server.public_url: {public_url!r} must be an https:// URL when server.tls_cert is set: the gateway "
            "serves https only, and its links, redirects and the account pages' origin are made from it"
        )
    url = text(upstream, "upstream", "url")
    if url != "embedded":
        check_http_url("upstream.url", url, allow="'embedded' or ")
    for key in ("upload_url", "simple_url"):
        if text(upstream, "upstream", key):
            check_http_url(f"upstream.{key}", upstream[key])
    return Config(
        server=ServerConfig(
            host=host,
            port=port,
            public_url=public_url.rstrip("/"),
            trusted_proxies=networks(text_list(server, "server", "trusted_proxies")),
            workers=count(server, "server", "workers"),
            tls=tls,
        ),
        upstream=UpstreamConfig(
            url=url,
            upload_url=text(upstream, "upstream", "upload_url"),
            simple_url=text(upstream, "upstream", "simple_url"),
            username=text(upstream, "upstream", "username"),
            password_file=optional_path(upstream, "upstream", "password_file"),
            data_dir=Path(text(upstream, "upstream", "data_dir")),
            timeout=float(duration("upstream.timeout", upstream["timeout"])),
            buffer_uploads=boolean(upstream, "upstream", "buffer_uploads"),
        ),
        store=parse_store_url(text(raw["store"], "store", "url")),
        tokens=_tokens(raw["tokens"]),
        policy=_policy(raw["policy"]),
        limits=_limits(raw["limits"]),
        logging=_logging(raw["logging"]),
        throttle=_throttle(raw["throttle"]),
        reads=_reads(raw["reads"]),
        oidc=_oidc(raw["oidc"]),
    )


def _tls(raw: dict[str, Any]) -> TLSFiles | None:
    cert, key = optional_path(raw, "server", "tls_cert"), optional_path(raw, "server", "tls_key")
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        missing, given = ("tls_cert", "tls_key") if cert is None else ("tls_key", "tls_cert")
        raise ConfigError(
            f"server.{missing}: must be set with server.{given} (a PEM certificate chain and its private key), "
            "or neither for plain http"
        )
    return TLSFiles(cert=cert, key=key)


def _tokens(raw: dict[str, Any]) -> TokensConfig:
    prefix = text(raw, "tokens", "prefix")
    if not re.fullmatch(r"[a-z][a-z0-9]{0,15}", prefix):
        raise ConfigError(f"tokens.prefix: {prefix!r} must be 1-16 lowercase letters or digits, starting with a letter")
    lifetime = text(raw, "tokens", "max_lifetime")
    return TokensConfig(
        prefix=prefix,
        secret_file=Path(text(raw, "tokens", "secret_file")),
        max_lifetime=duration("tokens.max_lifetime", lifetime) if lifetime else None,
    )


def _policy(raw: dict[str, Any]) -> PolicyConfig:
    actions = frozenset(text_list(raw, "policy", "allowed_actions"))
    known = {"file_upload", "remove_pkg", "doc_upload"}
    if not actions <= known:
        raise ConfigError(f"policy.allowed_actions: {sorted(actions - known)} not allowed; choose from {sorted(known)}")
    return PolicyConfig(
        password_uploads=choice(raw, "policy", "password_uploads", ("deny-2fa", "deny", "allow")),
        new_projects=choice(raw, "policy", "new_projects", ("claim", "deny")),
        allowed_actions=actions,
        platform_tags="any" if choice(raw, "policy", "platform_tags", ("pypi", "any")) == "any" else "pypi",
    )


def _limits(raw: dict[str, Any]) -> LimitsConfig:
    project_size = raw["max_project_size"]
    return LimitsConfig(
        max_file_size=parse_size("limits.max_file_size", raw["max_file_size"]),
        max_project_size=parse_size("limits.max_project_size", project_size) if project_size else None,
        read_timeout=float(duration("limits.read_timeout", raw["read_timeout"])),
        clients=_client_limits(raw),
        max_uploads_per_user=count(raw, "limits", "max_uploads_per_user"),
        max_uploads=count(raw, "limits", "max_uploads"),
    )


# ---- [throttle] and the upload caps of [limits] (issue #13)
def _throttle(raw: dict[str, Any]) -> ThrottleConfig:
    lock, max_lock = duration("throttle.lock", raw["lock"]), duration("throttle.max_lock", raw["max_lock"])
    if not lock <= max_lock <= lock * 2**20:
        raise ConfigError(
            f"throttle.max_lock: {raw['max_lock']!r} must be at least throttle.lock and at most 2**20 times it"
        )
    return ThrottleConfig(
        failures=count(raw, "throttle", "failures"),
        lock=lock,
        max_lock=max_lock,
        account_failures=count(raw, "throttle", "account_failures"),
        account_window=duration("throttle.account_window", raw["account_window"]),
        address_failures=count(raw, "throttle", "address_failures"),
        address_window=duration("throttle.address_window", raw["address_window"]),
        password_checks=count(raw, "throttle", "password_checks"),
        password_check_queue=count(raw, "throttle", "password_check_queue", minimum=0),
    )


# ---- end of [throttle]


def _logging(raw: dict[str, Any]) -> LoggingConfig:
    return LoggingConfig(
        level=choice(raw, "logging", "level", ("debug", "info", "warning", "error")),
        format=choice(raw, "logging", "format", ("text", "json")),
        audit_file=optional_path(raw, "logging", "audit_file"),
    )


def parse_store_url(url: str, key: str = "store.url") -> StoreConfig:
    """A store's URL (`store.url`, or the `--to` of `db copy`), checked; `key` names it in the error."""
    if url.startswith(_SQLITE) and len(url) > len(_SQLITE):
        return StoreConfig(url=url, path=Path(url[len(_SQLITE) :]))
    parts = urlsplit(url)
    if parts.scheme in _POSTGRESQL and parts.hostname and parts.path.strip("/") and not parts.query:
        return StoreConfig(url=url)
    raise ConfigError(
        f"{key}: {redact_url(url)!r} must be sqlite:///PATH (e.g. sqlite:///data/gateway.db) "
        "or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    )


def redact_url(url: str) -> str:
    """`url` with any password in it written `***`, for errors, logs and banners: everything from the user name's
    colon to the last `@`, so a password with `@`, `/` or `#` in it (encoded or not) never shows, and the value of
    a `password=` query parameter (libpq takes one there too: such a URL is refused, and its refusal quotes it)."""
    shown = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):.*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", shown, flags=re.IGNORECASE)


def token_location(config: Config) -> str:
    """The macaroon location: the public URL's host, as PyPI uses its domain."""
    return urlsplit(config.server.public_url).hostname or "localhost"
