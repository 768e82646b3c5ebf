"""`project grant/remove/list`: who has which role on which project, in the store alone."""

from __future__ import annotations

import argparse
import json
import re
import sys

from packaging.utils import canonicalize_name

from gateway.cli.common import CommandError, actor
from gateway.config import Config
from gateway.store import Store

PROJECT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?", re.ASCII)


async def project_grant(store: Store, args: argparse.Namespace, config: Config) -> None:
    user = await store.require_user(args.user)
    name = project_name(args.project)
    await store.grant(name, args.project, user, args.role, by=actor())
    print(f"{user.name} is now {args.role} of {name}", file=sys.stderr)


async def project_remove(store: Store, args: argparse.Namespace, config: Config) -> None:
    user = await store.require_user(args.user)
    name = project_name(args.project)
    if not await store.remove_role(name, user, by=actor()):
        raise CommandError(f"{user.name} has no role on {name}")
    print(f"{user.name} no longer has a role on {name}", file=sys.stderr)


async def project_list(store: Store, args: argparse.Namespace, config: Config) -> None:
    user = await store.require_user(args.user)
    projects = [
        {"project": p.name, "display_name": p.display_name, "role": role} for p, role in await store.projects_of(user)
    ]
    if args.json:
        print(json.dumps(projects, indent=2))
        return
    for item in projects:
        print(f"{item['project']}  {item['role']}")


def project_name(given: str) -> str:
    if not PROJECT_NAME.fullmatch(given):
        raise CommandError(f"invalid project name {given[:60]!r}: use letters, digits, '.', '_' and '-'")
    return canonicalize_name(given)
