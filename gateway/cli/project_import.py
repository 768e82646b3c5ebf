"""`project import`: record the projects the index already has; the one store command that talks to the index."""

from __future__ import annotations

import argparse
import sys

from gateway.app import open_index
from gateway.cli.common import CommandError, actor
from gateway.config import Config
from gateway.embedded import EmbeddedIndexError
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.store import Store


async def project_import(store: Store, args: argparse.Namespace, config: Config) -> None:
    owner = await store.require_user(args.owner) if args.owner else None
    try:
        async with open_index(config, Metrics()) as index:
            projects = await index.projects()
    except GatewayError as exc:
        raise CommandError(exc.message) from None
    except EmbeddedIndexError as exc:
        raise CommandError(str(exc)) from None
    added = await store.import_projects(projects, owner, by=actor())
    whose = f"owned by {owner.name}" if owner else "unowned until 'upload-gateway project grant'"
    print(f"{len(projects)} projects on the index; {added} new to the gateway, now {whose}", file=sys.stderr)
