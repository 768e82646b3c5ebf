"""`user add/list/remove/password/2fa enable/2fa disable`: accounts, their passwords and second factors."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import sys
import time

from gateway import accounts, twofactor
from gateway.cli.common import CommandError, _when, actor
from gateway.cli.tokens import token_settings
from gateway.config import Config
from gateway.credentials import TOKEN_USERNAME
from gateway.passwords import hash_password
from gateway.store import Store, User

USERNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,48}[A-Za-z0-9])?")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise CommandError("no terminal to ask for the password: pass it on standard input with --password-stdin")
        try:
            password = getpass.getpass("Password: ")
            repeated = getpass.getpass("Repeat password: ")
        except EOFError:
            raise CommandError("no password given") from None
        if repeated != password:
            raise CommandError("the passwords do not match")
    if len(password) < 8:
        raise CommandError("the password must be at least 8 characters")
    return password


async def user_add(store: Store, args: argparse.Namespace, config: Config) -> None:
    name: str = args.name
    if not USERNAME.fullmatch(name) or name == TOKEN_USERNAME:
        raise CommandError(f"invalid user name {name[:60]!r}: use 1-50 letters, digits, '.', '_' or '-'")
    password = _read_password(args.password_stdin)
    await store.add_user(name, await asyncio.to_thread(hash_password, password))
    print(f"user {name} added", file=sys.stderr)


async def user_list(store: Store, args: argparse.Namespace, config: Config) -> None:
    summaries = await store.user_summaries(time.time())
    if args.json:
        users = [
            {
                "id": summary.user.id,
                "name": summary.user.name,
                "created": summary.user.created,
                "two_factor": {
                    "totp": summary.user.has_totp,
                    "security_keys": summary.user.webauthn_count,
                    "recovery_codes_left": summary.recovery_codes,
                },
                "tokens": {"active": summary.active_tokens, "all": summary.tokens},
                "last_token_use": _when(summary.last_token_use),
            }
            for summary in summaries
        ]
        print(json.dumps(users, indent=2))
        return
    for summary in summaries:
        second = _factors(summary.user) or "none"
        if summary.user.has_2fa:
            second += f" ({summary.recovery_codes} recovery codes left)"
        print(
            f"{summary.user.name}  2FA: {second}  tokens: {summary.active_tokens} active of {summary.tokens}  "
            f"last token use: {_when(summary.last_token_use) or 'never'}"
        )


async def user_remove(store: Store, args: argparse.Namespace, config: Config) -> None:
    user = await store.require_user(args.name)
    removed = await store.remove_user(user, by=actor())
    left = f"; now without an owner: {', '.join(removed.orphaned)}" if removed.orphaned else ""
    print(f"user {user.name} removed, with {removed.tokens} token(s), which no longer work{left}", file=sys.stderr)


async def user_password(store: Store, args: argparse.Namespace, config: Config) -> None:
    user = await store.require_user(args.name)
    password = _read_password(args.password_stdin)
    await accounts.change_password(store, user, password, by=actor())
    print(f"password of {user.name} changed; their account-page sessions are ended", file=sys.stderr)


async def user_2fa_enable(store: Store, args: argparse.Namespace, config: Config) -> None:
    user = await store.require_user(args.name)
    if user.has_2fa and not args.replace:
        raise CommandError(
            f"{user.name} already has {_factors(user)}: --replace gives a new authenticator secret and new recovery "
            f"codes (the old ones stop working), or reset first with: upload-gateway user 2fa disable {user.name}"
        )
    settings = token_settings(config)
    totp = twofactor.new_totp_secret()
    codes = twofactor.new_recovery_codes()
    await accounts.enrol_totp(store, settings, user, totp, recovery_codes=codes, by=actor())
    print(accounts.totp_uri(settings, user.name, totp))
    print("Recovery codes (each works once; store them safely, they are not shown again):")
    for code in codes:
        print(f"  {code}")


async def user_2fa_disable(store: Store, args: argparse.Namespace, config: Config) -> None:
    user = await store.require_user(args.name)
    if not user.has_2fa:
        raise CommandError(f"{user.name} has no second factor to disable")
    await store.disable_2fa(user, by=actor())
    policy = config.policy.password_uploads
    uploads = "still need an API token to upload" if policy == "deny" else "may upload with their password again"
    print(
        f"{_factors(user)} and the recovery codes of {user.name} removed; they {uploads} "
        f"(policy.password_uploads = {policy}) and can enrol again on the account pages",
        file=sys.stderr,
    )


def _factors(user: User) -> str:
    """A user's second factors in words ("" for none)."""
    keys = f"{user.webauthn_count} security key(s)" if user.webauthn_count else ""
    return " and ".join(filter(None, ["an authenticator app" if user.has_totp else "", keys]))
