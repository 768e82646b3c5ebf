"""One configuration value read and checked: strings, choices, whole numbers, sizes, durations, addresses, URLs.

Each takes what TOML or a `GATEWAY_*` variable gave (a variable's text too: "true", "8", "30s") and returns the typed
value, or raises `ConfigError` with the one line that names the key and what is allowed. Pure: no file, no
environment.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(Exception):
    """A configuration value that cannot be used; the message is the one line printed at start-up."""


def text(raw: dict[str, Any], section: str, key: str) -> str:
    value = raw[key]
    if not isinstance(value, str):
        raise ConfigError(f"{section}.{key}: must be a string, got {value!r}")
    return value.strip()


def text_list(raw: dict[str, Any], section: str, key: str) -> list[str]:
    value = raw[key]
    if not is_list(value) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{section}.{key}: must be a list of strings, got {value!r}")
    return list(value)


def optional_path(raw: dict[str, Any], section: str, key: str) -> Path | None:
    value = text(raw, section, key)
    return Path(value) if value else None


def choice(raw: dict[str, Any], section: str, key: str, allowed: tuple[str, ...]) -> str:
    value = text(raw, section, key)
    if value not in allowed:
        raise ConfigError(f"{section}.{key}: {value!r} not allowed; choose one of {', '.join(allowed)}")
    return value


def boolean(raw: dict[str, Any], section: str, key: str) -> bool:
    """TOML booleans, and "true"/"false" from GATEWAY_* variables."""
    value = raw[key]
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise ConfigError(f"{section}.{key}: {value!r} must be true or false")
    return value


def count(raw: dict[str, Any], section: str, key: str, *, minimum: int = 1) -> int:
    """A whole number (from TOML, or the text of an environment variable)."""
    value = raw[key]
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= 10**9:
        raise ConfigError(f"{section}.{key}: {value!r} must be a whole number of at least {minimum}")
    return value


def is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


def parse_size(key: str, value: Any) -> int:
    """Parse `100MiB`, `1 GB`, `512` (bytes)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS or float(match.group(1)) <= 0:
        raise ConfigError(f"{key}: {value!r} must be a positive size such as 100MiB, 2GiB or 500MB")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(value: str) -> int:
    """Seconds in `30d`, `12h`, `90m`, `45s`; raises ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", value)
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"{value!r} must be a positive duration such as 30d, 12h, 90m or 45s")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def duration(key: str, value: Any) -> int:
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"server.listen: {value!r} must be HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def default_public_url(host: str, port: int, *, https: bool = False) -> str:
    """`server.public_url` when it is not set: the listening address (https when the gateway serves TLS), a
    loopback or any-address host spelled `localhost`, the one local name browsers accept as a security key's site
    (WebAuthn refuses IP addresses)."""
    scheme = "https" if https else "http"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"{scheme}://{host}:{port}"
    if address.is_loopback or address.is_unspecified:
        return f"{scheme}://localhost:{port}"
    return f"{scheme}://[{host}]:{port}" if address.version == 6 else f"{scheme}://{host}:{port}"


def check_http_url(key: str, value: str, allow: str = "") -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: {value!r} must be {allow}an http:// or https:// URL")


def check_https_url(key: str, value: str) -> None:
    if not is_https_url(value):
        raise ConfigError(
            f"{key}: {value!r} must be an https:// URL (http:// only to a loopback host), no user, query or fragment"
        )


def is_https_url(url: str) -> bool:
    """An https URL with a host and no credentials, query or fragment; plain http only to a loopback host (a test
    issuer, one on the same machine). For what the gateway fetches keys from: keys read in the clear could be
    anyone's."""
    if not url.isascii() or not url.isprintable() or any(ch.isspace() or ch in "?#" for ch in url):
        return False
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError:
        return False
    if not host or parts.username is not None:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and (host == "localhost" or _is_loopback(host)))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def networks(entries: list[str]) -> tuple[str, ...]:
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(f"server.trusted_proxies: {entry!r} is not an IP address or network") from None
    return tuple(entries)
