"""`token create/list/revoke`: API tokens, their scope, permissions and expiry (never their secrets once shown)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from packaging.utils import canonicalize_name

from gateway import escaping
from gateway.authentication import TokenSettings
from gateway.cli.common import CommandError, _when, actor
from gateway.config import Config, parse_duration, token_location
from gateway.crypto import server_secret
from gateway.minting import create_token, scope_of
from gateway.store import Store


def _settings(config: Config) -> TokenSettings:
    return TokenSettings(config.tokens.prefix, token_location(config), server_secret(config))


def _expiry(given: str | None, config: Config) -> int | None:
    cap = config.tokens.max_lifetime
    try:
        lifetime = parse_duration(given) if given else cap
    except ValueError as exc:
        raise CommandError(f"--expires: {exc}") from None
    if lifetime is not None and cap is not None and lifetime > cap:
        raise CommandError(f"--expires {given} is longer than tokens.max_lifetime ({cap // 86400}d)")
    return int(time.time()) + lifetime if lifetime is not None else None


async def token_create(store: Store, args: argparse.Namespace, config: Config) -> None:
    user = await store.require_user(args.name)
    projects = []
    for given in args.project:
        project, role, _ = await store.project_access(canonicalize_name(given), user.id)
        if project is None or role is None:
            raise CommandError(
                f"{user.name} has no role on project {given!r}: grant one first "
                f"(upload-gateway project grant {given} {user.name})"
            )
        projects.append(project)
    expires_at = _expiry(args.expires, config)
    description = args.description or f"created with the CLI on {time.strftime('%Y-%m-%d %H:%M:%S')}"
    permissions = ("read",) if args.read_only else ("read", "upload") if args.read else ("upload",)
    token, row = await create_token(
        store,
        _settings(config),
        user,
        description=description,
        projects=projects,
        expires_at=expires_at,
        permissions=permissions,
    )
    print(token)
    print(f"token {row.id} created for {user.name} ({scope_of(row, user.id)}); it is not shown again", file=sys.stderr)


async def token_list(store: Store, args: argparse.Namespace, config: Config) -> None:
    user = await store.require_user(args.name) if args.name else None
    rows = []
    for row, owner in await store.list_tokens(user):
        rows.append(
            {
                "id": row.id,
                "user": owner,
                "description": row.description,
                "scope": scope_of(row, row.user_id),
                "permissions": list(row.permissions),
                "created": _when(row.created),
                "last_used": _when(row.last_used),
                "expires": _when(row.expires),
                "revoked": _when(row.revoked),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for item in rows:
        state = f"revoked {item['revoked']}" if item["revoked"] else f"expires {item['expires'] or 'never'}"
        print(
            f"{item['id']}  {item['user']}  {item['scope']}  created {item['created']}  "
            f"last used {item['last_used'] or 'never'}  {state}  {escaping.printable(str(item['description']))}"
        )


async def token_revoke(store: Store, args: argparse.Namespace, config: Config) -> None:
    if args.all:
        user = await store.require_user(args.all)
        count = await store.revoke_all_tokens(user, by=actor())
        print(f"revoked {count} token(s) of {user.name}", file=sys.stderr)
        return
    row = await store.revoke_token(args.token_id, by=actor())
    if row is None:
        raise CommandError(f"no token with id {args.token_id[:40]!r} (see: upload-gateway token list)")
    print(f"token {row.id} revoked", file=sys.stderr)
