"""`publisher add/list/remove`: trusted publishers of projects, and pending ones for projects to come."""

from __future__ import annotations

import argparse
import json
import sys

from gateway import accounts
from gateway.cli.common import CommandError, _when, actor
from gateway.cli.projects import project_name
from gateway.config import Config
from gateway.store import Store

MISSING = {  # what each kind of publisher needs, in terms of the flags
    "github": "--repository OWNER/REPO, --owner-id ID and --workflow FILE",
    "forgejo": "--repository OWNER/REPO, --owner-id ID and --workflow FILE",
    "gitlab": "--namespace NS, --project-path P and --ci-config PATH",
    "generic": "--subject SUB (and may add --claim NAME=VALUE)",
}


async def publisher_add(store: Store, args: argparse.Namespace, config: Config) -> None:
    name = project_name(args.project)
    try:
        fields = accounts.publisher_fields_of(
            config.oidc,
            args.issuer,
            repository=args.repository,
            owner_id=args.owner_id,
            workflow=args.workflow,
            namespace=args.namespace,
            project_path=args.project_path,
            ci_config=args.ci_config,
            subject=args.subject,
            claims=args.claim,
            environment=args.environment,
        )
    except accounts.MissingFields as exc:
        raise CommandError(f"a {exc.kind} publisher needs {MISSING[exc.kind]}") from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.pending:
        if args.owner is None:
            raise CommandError("--pending: give --owner USER, who will own the project its first publish creates")
        owner = await store.require_user(args.owner)
        pending = await accounts.add_pending_publisher(
            store, config.oidc, name, args.project, args.issuer, fields, owner
        )
        print(pending.id)
        print(
            f"pending publisher for {name} (owned by {owner.name} once created), expires {_when(pending.expires)}",
            file=sys.stderr,
        )
        return
    if args.owner is not None:
        raise CommandError("--owner goes with --pending: an existing project keeps its owners")
    added = await accounts.add_publisher(store, config.oidc, name, args.issuer, fields, by=actor())
    print(added.id)
    print(f"{name} may now be published by {accounts.describe_publisher(added.kind, added.fields)}", file=sys.stderr)


async def publisher_list(store: Store, args: argparse.Namespace, config: Config) -> None:
    name = project_name(args.project) if args.project else None
    rows = await accounts.list_publishers(store, name, config.oidc)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = f"pending, owned by {row['owner']} once created" if row["pending"] else "active"
        if row["refused"] is not None:
            state = f"refused: {row['refused']}"
        print(f"{row['id']}  {row['project']}  {row['issuer']}  {row['description']}  ({state})")


async def publisher_remove(store: Store, args: argparse.Namespace, config: Config) -> None:
    removed = await store.remove_publisher(args.publisher_id, by=actor())
    if removed is None:
        raise CommandError(
            f"no publisher {args.publisher_id[:60]!r} (a pending one is gone once its first publish created its "
            "project): `upload-gateway publisher list` shows them"
        )
    print(f"removed the publisher of {removed.project} (its tokens are revoked)", file=sys.stderr)
