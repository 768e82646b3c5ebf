"""`upload-gateway` / `python -m gateway`: serve, and administer users, tokens and projects.

User mistakes print one line on stderr and exit 1 (usage errors 2); never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

from aiohttp import web

from gateway.app import create_app
from gateway.auth import TOKEN_USERNAME, hash_password
from gateway.config import DEFAULT_PATH, Config, ConfigError, load_config
from gateway.embedded import EmbeddedIndexError
from gateway.store import Store, StoreError

USERNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,48}[A-Za-z0-9])?")


class CommandError(Exception):
    """A user mistake: printed as one line, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upload-gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="TOML file (default: $GATEWAY_CONFIG, then config/gateway.toml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run the gateway")
    user = commands.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    add = user.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    listing = user.add_parser("list", help="list users")
    listing.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(_config_path(args.config), os.environ)
        if args.command == "serve":
            return serve(config)
        return asyncio.run(_with_store(config, COMMANDS[(args.command, args.action)], args))
    except (ConfigError, CommandError, StoreError, EmbeddedIndexError) as exc:
        print(f"upload-gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _config_path(given: Path | None) -> Path | None:
    if given is not None:
        return given
    if os.environ.get("GATEWAY_CONFIG"):
        return Path(os.environ["GATEWAY_CONFIG"])
    return DEFAULT_PATH if DEFAULT_PATH.exists() else None


async def _with_store(
    config: Config, command: Callable[[Store, argparse.Namespace, Config], Awaitable[None]], args: argparse.Namespace
) -> int:
    store = await Store.open(config.store.path)
    try:
        await command(store, args, config)
    finally:
        await store.close()
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
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
    users = await store.list_users()
    if args.json:
        print(json.dumps([{"id": u.id, "name": u.name, "created": u.created} for u in users], indent=2))
        return
    for user in users:
        print(user.name)


COMMANDS: dict[tuple[str, str], Callable[[Store, argparse.Namespace, Config], Awaitable[None]]] = {
    ("user", "add"): user_add,
    ("user", "list"): user_list,
}


def serve(config: Config) -> int:
    logging.basicConfig(
        level=config.logging.level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    asyncio.run(_serve(config))
    return 0


async def _serve(config: Config) -> None:
    runner = web.AppRunner(create_app(config), access_log_format='%a "%r" %s %b %Tfs')
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.server.host, config.server.port)
        await site.start()
        _print_banner(config)
        async with _until_signalled() as stopped:
            await stopped.wait()
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _until_signalled() -> AsyncIterator[asyncio.Event]:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    try:
        yield stopped
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _print_banner(config: Config) -> None:
    url = config.server.public_url
    upstream = "embedded pypiserver" if config.upstream.embedded else config.upstream.url
    print(
        f"upload-gateway listening on http://{config.server.host}:{config.server.port} (index: {upstream})\n"
        f"  upload:  twine upload --repository-url {url}/legacy/ dist/*\n"
        f"  install: pip install --index-url {url}/simple/ PROJECT\n"
        f"  add a user first: upload-gateway user add NAME",
        flush=True,
    )
