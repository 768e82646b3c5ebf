"""Gateway configuration files for the tests: the subprocess gateways' and the in-process apps' alike."""

from __future__ import annotations

from pathlib import Path
from typing import TypeGuard

from gateway.config import Config, load_config

PUBLIC_URL = "http://gateway.test"


def write_config(path: Path, sections: dict[str, dict[str, object]]) -> None:
    """Each value a TOML string, or a list of strings; a list of dicts is an array of tables (`[[oidc.issuers]]`)."""
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        tables = {key: value for key, value in values.items() if _is_tables(value)}
        for key, value in values.items():
            if key not in tables:
                lines.append(f"{key} = {_rendered(value)}")
        for key, entries in tables.items():
            for entry in entries:
                lines.append(f"[[{section}.{key}]]")
                lines.extend(f"{name} = {_rendered(item)}" for name, item in entry.items())
    path.write_text("\n".join(lines) + "\n")


def _is_tables(value: object) -> TypeGuard[list[dict[str, object]]]:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def _rendered(value: object) -> str:
    return repr(value).replace("'", '"') if isinstance(value, list) else f'"{value}"'


def app_config(directory: Path, upstream: dict[str, object], /, **overrides: dict[str, object]) -> Config:
    """The frozen Config of an in-process app: its store and secret file under `directory`, `upstream` as given,
    then `overrides` ({section: {key: value}}), read through the same file and loader as `serve`."""
    directory.mkdir(parents=True, exist_ok=True)
    sections: dict[str, dict[str, object]] = {
        "server": {"public_url": PUBLIC_URL},
        "upstream": upstream,
        "store": {"url": f"sqlite:///{directory / 'gateway.db'}"},
        "tokens": {"secret_file": str(directory / "secret.key")},
        "logging": {"audit_file": str(directory / "audit.log")},
    }
    for section, values in overrides.items():
        sections.setdefault(section, {}).update(values)
    path = directory / "gateway.toml"
    write_config(path, sections)
    return load_config(path, {})
