"""`upload-gateway` / `python -m gateway`: serve, and administer users, tokens and projects.

User mistakes print one line on stderr and exit 1 (usage errors 2); never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import errno
import getpass
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from packaging.utils import canonicalize_name

from gateway import accounts, connections, logs, twofactor
from gateway.app import SERVER_OPTIONS, create_app, open_index
from gateway.authentication import TokenSettings
from gateway.config import (
    CONFIG_VARIABLE,
    DEFAULT_PATH,
    Config,
    ConfigError,
    find_config,
    load_config,
    parse_duration,
    server_secret,
    token_location,
)
from gateway.credentials import TOKEN_USERNAME
from gateway.embedded import EmbeddedIndexError
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.passwords import hash_password
from gateway.policy import Role
from gateway.store import Store, StoreError, User

USERNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,48}[A-Za-z0-9])?")
PROJECT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?", re.ASCII)


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
    listing = user.add_parser("list", help="list users, their second factors, tokens and last token use")
    listing.add_argument("--json", action="store_true")
    remove = user.add_parser("remove", help="remove a user: their tokens, factors, sessions and roles go with them")
    remove.add_argument("name")
    password = user.add_parser("password", help="set a user's password (asks for it); signs them out of the pages")
    password.add_argument("name")
    password.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    twofa = user.add_parser("2fa", help="two-factor authentication").add_subparsers(dest="twofa", required=True)
    enable = twofa.add_parser("enable", help="enrol TOTP: prints the otpauth:// URI and recovery codes")
    enable.add_argument("name")
    enable.add_argument(
        "--replace", action="store_true", help="for a user who has a second factor: new secret and recovery codes"
    )
    disable = twofa.add_parser(
        "disable", help="an administrator's reset: remove every second factor and recovery code of a user"
    )
    disable.add_argument("name")

    token = commands.add_parser("token", help="manage API tokens").add_subparsers(dest="action", required=True)
    create = token.add_parser("create", help="create a token; prints the token alone on stdout")
    create.add_argument("name", help="the user the token acts for")
    create.add_argument("--project", action="append", default=[], help="limit to this project (repeatable)")
    reading = create.add_mutually_exclusive_group()
    reading.add_argument(
        "--read", action="store_true", help="the token may also read a private index (reads.access = authenticated)"
    )
    reading.add_argument("--read-only", action="store_true", help="the token may read a private index, never upload")
    create.add_argument("--expires", help="lifetime, e.g. 30d, 12h")
    create.add_argument("--description", default="", help="what the token is for")
    tlist = token.add_parser("list", help="list tokens (never their secrets)")
    tlist.add_argument("name", nargs="?")
    tlist.add_argument("--json", action="store_true")
    revoke = token.add_parser("revoke", help="revoke a token, or every token of a user with --all")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("token_id", nargs="?")
    target.add_argument("--all", metavar="NAME", help="revoke every token of this user")

    project = commands.add_parser("project", help="manage project roles").add_subparsers(dest="action", required=True)
    grant = project.add_parser("grant", help="give a user a role on a project (creates the project)")
    grant.add_argument("project")
    grant.add_argument("user")
    grant.add_argument("--role", choices=[role.value for role in Role], default=Role.OWNER.value)
    remove = project.add_parser("remove", help="take a user's role on a project away")
    remove.add_argument("project")
    remove.add_argument("user")
    adopt = project.add_parser(
        "import", help="record the projects the index already has, so nobody can claim them by uploading first"
    )
    adopt.add_argument("--owner", metavar="USER", help="make USER their owner (default: no owner until granted)")
    plist = project.add_parser("list", help="a user's projects and roles")
    plist.add_argument("user")
    plist.add_argument("--json", action="store_true")

    audit = commands.add_parser("audit", help="the audit trail: security events, oldest first")
    audit.add_argument("--since", help="a duration back from now (24h, 7d) or a date (2026-11-24, ISO 8601)")
    audit.add_argument("--user", help="only events of this user")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(action="show")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = find_config(args.config, os.environ)
        if path is None and args.command != "serve":
            raise CommandError(
                f"no configuration file (no {DEFAULT_PATH} in {Path.cwd()}): pass --config FILE or set "
                f"{CONFIG_VARIABLE} to the file the gateway is served with"
            )
        config = load_config(path, os.environ)
        if args.command == "serve":
            named = args.config is not None or bool(os.environ.get(CONFIG_VARIABLE))
            return serve(config, None if path is None else command_line(Path(os.path.abspath(path)) if named else None))
        action = args.twofa if (args.command, args.action) == ("user", "2fa") else args.action
        # What goes wrong is the command's one line; the gateway's log records (an index fault) are for `serve`.
        logging.getLogger("gateway").addHandler(logging.NullHandler())
        return asyncio.run(_with_store(config, COMMANDS[(args.command, action)], args))
    except (ConfigError, CommandError, StoreError, EmbeddedIndexError) as exc:
        print(f"upload-gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _with_store(
    config: Config, command: Callable[[Store, argparse.Namespace, Config], Awaitable[None]], args: argparse.Namespace
) -> int:
    store = await Store.open(config.store.path, audit_file=config.logging.audit_file)
    try:
        await command(store, args, config)
    finally:
        await store.close()
    return 0


def actor() -> str:
    """Who acts from the command line, for the audit trail: `cli:` and the operating-system user running it (by
    its effective uid, not $USER)."""
    try:
        return f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"
    except KeyError:
        return f"cli:uid {os.geteuid()}"


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
    settings = _settings(config)
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


def _settings(config: Config) -> TokenSettings:
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
        _settings(config),
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


def _when(stamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)) if stamp is not None else None


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
            f"last used {item['last_used'] or 'never'}  {state}  {logs.printable(str(item['description']))}"
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


async def project_grant(store: Store, args: argparse.Namespace, config: Config) -> None:
    user = await store.require_user(args.user)
    name = _project_name(args.project)
    await store.grant(name, args.project, user, args.role, by=actor())
    print(f"{user.name} is now {args.role} of {name}", file=sys.stderr)


async def project_remove(store: Store, args: argparse.Namespace, config: Config) -> None:
    user = await store.require_user(args.user)
    name = _project_name(args.project)
    if not await store.remove_role(name, user, by=actor()):
        raise CommandError(f"{user.name} has no role on {name}")
    print(f"{user.name} no longer has a role on {name}", file=sys.stderr)


async def project_import(store: Store, args: argparse.Namespace, config: Config) -> None:
    owner = await store.require_user(args.owner) if args.owner else None
    try:
        async with open_index(config, Metrics()) as index:
            projects = await index.projects()
    except GatewayError as exc:
        raise CommandError(exc.message) from None
    added = await store.import_projects(projects, owner, by=actor())
    whose = f"owned by {owner.name}" if owner else "unowned until 'upload-gateway project grant'"
    print(f"{len(projects)} projects on the index; {added} new to the gateway, now {whose}", file=sys.stderr)


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


def _project_name(given: str) -> str:
    if not PROJECT_NAME.fullmatch(given):
        raise CommandError(f"invalid project name {given[:60]!r}: use letters, digits, '.', '_' and '-'")
    return canonicalize_name(given)


def _since(given: str | None) -> float:
    if not given:
        return 0.0
    with contextlib.suppress(ValueError):
        return time.time() - parse_duration(given)
    try:
        moment = datetime.datetime.fromisoformat(given)
    except ValueError:
        raise CommandError(f"--since {given[:40]!r}: use a duration (24h, 7d) or a date (2026-11-24)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)).timestamp()


async def audit_show(store: Store, args: argparse.Namespace, config: Config) -> None:
    for event in await store.audit_events(since=_since(args.since), user_name=args.user):
        if args.json:
            print(event.to_json())
            continue
        who = [
            logs.key_value(label, value)
            for label, value in (("user", event.user_name), ("token", event.token_id), ("project", event.project))
            if value
        ]
        detail = [logs.key_value(key, value) for key, value in sorted(event.detail.items())]
        print(f"{_when(event.at)}  {logs.printable(event.event):<24} {' '.join(who + detail)}".rstrip())


COMMANDS: dict[tuple[str, str], Callable[[Store, argparse.Namespace, Config], Awaitable[None]]] = {
    ("audit", "show"): audit_show,
    ("user", "add"): user_add,
    ("user", "list"): user_list,
    ("user", "remove"): user_remove,
    ("user", "password"): user_password,
    ("user", "enable"): user_2fa_enable,
    ("user", "disable"): user_2fa_disable,
    ("token", "create"): token_create,
    ("token", "list"): token_list,
    ("token", "revoke"): token_revoke,
    ("project", "grant"): project_grant,
    ("project", "remove"): project_remove,
    ("project", "import"): project_import,
    ("project", "list"): project_list,
}


def serve(config: Config, cli: str | None = None) -> int:
    """Run the gateway until SIGINT/SIGTERM. `cli`: how to run the CLI on the same store, for the banner (None:
    there is no configuration file, which the CLI needs)."""
    sockets = _listen(config.server.host, config.server.port)
    logs.setup(config.logging, config.tokens.prefix)
    try:
        asyncio.run(_serve(config, sockets, cli))
    finally:
        for sock in sockets:
            sock.close()
    return 0


def _listen(host: str, port: int) -> list[socket.socket]:
    """Bound sockets for `server.listen` (every address the host has), before anything starts: a taken address
    is one line, and a second `serve` touches neither the store nor the index."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"server.listen: cannot listen on {where}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"cannot listen on {where}: the address is in use (is the gateway running already?); stop what "
                "holds it, or listen elsewhere with server.listen or GATEWAY_SERVER_LISTEN=HOST:PORT"
            ) from None
        raise ConfigError(f"server.listen: cannot listen on {where}: {exc.strerror or exc}") from None
    return sockets


async def _serve(config: Config, sockets: list[socket.socket], cli: str | None) -> None:
    runner = connections.runner(create_app(config), config, access_log=None, **SERVER_OPTIONS)
    await runner.setup()
    try:
        for sock in sockets:
            await web.SockSite(runner, sock).start()
        _print_banner(config, [sock.getsockname() for sock in sockets], cli)
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


def command_line(config_file: Path | None) -> str:
    """How to run this very CLI again from the same directory: as it was started (`.venv/bin/upload-gateway`,
    `upload-gateway` from PATH, or `python -m gateway`), with --config when a file was named."""
    program = sys.argv[0] if sys.argv else ""
    if Path(program).name == "__main__.py" or not program:
        words = [sys.executable, "-m", "gateway"]
    elif os.sep in program and shutil.which(Path(program).name) != os.path.abspath(program):
        words = [program]
    else:
        words = [Path(program).name]
    if config_file is not None:
        words += ["--config", str(config_file)]
    return shlex.join(words)


def _print_banner(config: Config, bound: list[tuple[Any, ...]], cli: str | None) -> None:
    url = config.server.public_url
    upstream = "embedded pypiserver" if config.upstream.embedded else config.upstream.url
    listening = ", ".join(f"http://[{a[0]}]:{a[1]}" if ":" in a[0] else f"http://{a[0]}:{a[1]}" for a in bound)
    first = (
        f"  a user:  {cli} user add NAME\n  a token: {cli} token create NAME\n"
        if cli is not None
        else f"  a user:  the CLI needs a configuration file to find this store: serve with --config FILE or "
        f"{CONFIG_VARIABLE}\n"
    )
    print(
        f"upload-gateway listening on {listening} (index: {upstream}; public URL {url})\n{first}"
        f"  upload:  twine upload --repository-url {url}/legacy/ -u __token__ -p TOKEN dist/*\n"
        f"  install: pip install --index-url {url}/simple/ PROJECT",
        flush=True,
    )
