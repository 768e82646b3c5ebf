"""`token create/list/revoke`: API tokens, their scope, permissions and expiry (never their secrets once shown)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from gateway import accounts, escaping
from gateway.authentication import TokenSettings
from gateway.cli.common import CommandError, _when, actor
from gateway.config import Config, token_location
from gateway.crypto import server_secret
from gateway.store import Store


def token_settings(config: Config) -> TokenSettings:
    """What minting a token or sealing a TOTP seed needs: the prefix, the location caveat, the server secret."""
    return TokenSettings(config.tokens.prefix, token_location(config), server_secret(config))


async def token_create(store: Store, args: argparse.Namespace, config: Config) -> None:
    user = await store.require_user(args.name)
    try:
        projects = await accounts.token_projects(store, user, args.project)
    except accounts.NoRole as exc:
        raise CommandError(
            f"{user.name} has no role on project {exc.project!r}: grant one first "
            f"(upload-gateway project grant {exc.project} {user.name})"
        ) from None
    try:
        expires_at = accounts.token_expiry(args.expires, config.tokens.max_lifetime, time.time())
    except accounts.TooLong as exc:
        raise CommandError(
            f"--expires {args.expires} is longer than tokens.max_lifetime ({exc.max_lifetime // 86400}d)"
        ) from None
    except ValueError as exc:
        raise CommandError(f"--expires: {exc}") from None
    description = args.description or f"created with the CLI on {time.strftime('%Y-%m-%d %H:%M:%S')}"
    permissions = accounts.token_permissions(read=args.read or args.read_only, upload=not args.read_only)
    token, row = await accounts.create_token(
        store,
        token_settings(config),
        user,
        description=description,
        projects=projects,
        expires_at=expires_at,
        permissions=permissions,
    )
    print(token)
    print(
        f"token {row.id} created for {user.name} ({accounts.scope_of(row, user.id)}); it is not shown again",
        file=sys.stderr,
    )


async def token_list(store: Store, args: argparse.Namespace, config: Config) -> None:
    user = await store.require_user(args.name) if args.name else None
    rows = []
    for row, owner in await store.list_tokens(user):
        rows.append(
            {
                "id": row.id,
                "user": owner,
                "description": row.description,
                "scope": accounts.scope_of(row, row.user_id),
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
    row = await accounts.revoke_token(store, args.token_id, by=actor())
    if row is None:
        raise CommandError(f"no token with id {args.token_id[:40]!r} (see: upload-gateway token list)")
    print(f"token {row.id} revoked", file=sys.stderr)
