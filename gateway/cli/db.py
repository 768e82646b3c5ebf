"""`db upgrade` and `db copy --to URL`: the store's database as a whole (`gateway.store.admin`). Neither opens the
store as the other commands do: `db upgrade` is what they ask for when the schema is out of date."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gateway.cli.common import CommandError
from gateway.config import Config, ConfigError, StoreConfig, parse_store_url


async def db_upgrade(config: Config, _args: argparse.Namespace) -> None:
    from gateway.store import StoreError
    from gateway.store.admin import upgrade_store

    try:
        done = await upgrade_store(config.store.url, {issuer.name: issuer.url for issuer in config.oidc.issuers})
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    print(f"{config.store.shown}: {done}")


async def db_copy(config: Config, args: argparse.Namespace) -> None:
    """Every table of the store into the empty database `--to` (migrated to head first), then the counts."""
    from gateway.store import StoreError
    from gateway.store.admin import copy_store

    target = _target(args.to)
    if target.url == config.store.url:
        raise CommandError("--to: that is the store itself")
    try:
        counts = await copy_store(config.store.url, target.url)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    for table, rows in counts.items():
        print(f"{table:22} {rows}")
    print(f"copied {sum(counts.values())} rows in {len(counts)} tables to {target.shown}; counts verified")


def _target(url: str) -> StoreConfig:
    """`--to` as `store.url` takes it; a relative SQLite path is the working directory's."""
    try:
        target = parse_store_url(url, "--to")
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    if target.path is not None and not target.path.is_absolute():
        absolute = Path(os.path.abspath(target.path))
        return StoreConfig(url=f"sqlite:///{absolute}", path=absolute)
    return target
