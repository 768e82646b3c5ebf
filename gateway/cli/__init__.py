"""`upload-gateway` / `python -m gateway`: serve, and administer users, tokens and projects.

User mistakes print one line on stderr and exit 1 (usage errors 2); never a traceback. Parsing imports
neither the server nor any command: each command's module is imported when it runs (`COMMANDS`), so `--help`
and `token list` start without aiohttp, the app or the account pages, and only `serve` loads the server.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.cli.common import Command, CommandError
from gateway.config import CONFIG_VARIABLE, DEFAULT_PATH, Config, ConfigError, find_config, load_config
from gateway.policy import Role


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upload-gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="TOML file (default: $GATEWAY_CONFIG, then config/gateway.toml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serving = commands.add_parser("serve", help="run the gateway")
    serving.add_argument(
        "--workers", type=int, metavar="N", help="processes serving the port, one per core (default: server.workers)"
    )
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

    publisher = commands.add_parser(
        "publisher", help="trusted publishers: CI workflows that may mint short-lived upload tokens"
    ).add_subparsers(dest="action", required=True)
    padd = publisher.add_parser("add", help="let a CI workflow publish PROJECT with no stored secret")
    padd.add_argument("project")
    padd.add_argument("--issuer", required=True, metavar="NAME", help="a configured [[oidc.issuers]] name")
    padd.add_argument("--repository", metavar="OWNER/REPO", help="GitHub or Forgejo: the repository")
    padd.add_argument("--owner-id", metavar="ID", help="GitHub or Forgejo: the owner's immutable numeric id")
    padd.add_argument("--workflow", metavar="FILE", help="GitHub or Forgejo: the workflow file, e.g. release.yml")
    padd.add_argument("--namespace", metavar="NS", help="GitLab: the project's group or user")
    padd.add_argument("--project-path", metavar="P", help="GitLab: the project's name in its namespace")
    padd.add_argument("--ci-config", metavar="PATH", help="GitLab: the CI file, e.g. .gitlab-ci.yml")
    padd.add_argument("--subject", metavar="SUB", help="a generic issuer: the token's exact `sub`")
    padd.add_argument(
        "--claim", action="append", default=[], metavar="NAME=VALUE", help="a generic issuer: a claim to match too"
    )
    padd.add_argument("--environment", default="", metavar="ENV", help="only from this deployment environment")
    padd.add_argument(
        "--pending", action="store_true", help="for a project that does not exist yet: its first publish creates it"
    )
    padd.add_argument("--owner", metavar="USER", help="with --pending: who owns the project it creates")
    plist_ = publisher.add_parser("list", help="the publishers (and pending publishers) of a project, or of all")
    plist_.add_argument("project", nargs="?")
    plist_.add_argument("--json", action="store_true")
    premove = publisher.add_parser("remove", help="remove a publisher and revoke the tokens minted for it")
    premove.add_argument("publisher_id")

    audit = commands.add_parser("audit", help="the audit trail: security events, oldest first")
    audit.add_argument("--since", help="a duration back from now (24h, 7d) or a date (2026-11-24, ISO 8601)")
    audit.add_argument("--user", help="only events of this user")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(action="show")

    db = commands.add_parser("db", help="the store's database: migrations, and a copy into another").add_subparsers(
        dest="action", required=True
    )
    db.add_parser("upgrade", help="apply the schema migrations this gateway needs (SQLite or PostgreSQL)")
    copy = db.add_parser("copy", help="copy the store into another, empty database (e.g. SQLite to PostgreSQL)")
    copy.add_argument(
        "--to", required=True, metavar="URL", help="the target's store.url (postgresql://… or sqlite:///…)"
    )
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
            from gateway.cli.serve import command_line, serve  # the server's imports, for this command alone

            if args.workers is not None and args.workers < 1:
                raise CommandError(f"--workers {args.workers}: give at least 1 (one process per core)")
            named = args.config is not None or bool(os.environ.get(CONFIG_VARIABLE))
            cli = None if path is None else command_line(Path(os.path.abspath(path)) if named else None)
            return serve(config, cli, args.workers)
        if args.command == "db":
            from gateway.cli import db  # these two handle the database as a whole, not through an open store

            asyncio.run(db.db_upgrade(config, args) if args.action == "upgrade" else db.db_copy(config, args))
            return 0
        action = args.twofa if (args.command, args.action) == ("user", "2fa") else args.action
        # What goes wrong is the command's one line; the gateway's log records (an index fault) are for `serve`.
        logging.getLogger("gateway").addHandler(logging.NullHandler())
        return asyncio.run(_with_store(config, _command(args.command, action), args))
    except (ConfigError, CommandError) as exc:
        print(f"upload-gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _with_store(config: Config, command: Command, args: argparse.Namespace) -> int:
    """Run a command on the open store; the store's refusals are the command's one line. The store (SQLAlchemy,
    the drivers) is imported only now: `--help` does without it."""
    from gateway.store import Store, StoreError

    try:
        store = await Store.open(config.store.url, audit_file=config.logging.audit_file)
        try:
            await command(store, args, config)
        finally:
            await store.close()
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    return 0


# Each command's module (under gateway.cli) and function, imported when the command runs.
COMMANDS: dict[tuple[str, str], tuple[str, str]] = {
    ("audit", "show"): ("audit", "audit_show"),
    ("user", "add"): ("users", "user_add"),
    ("user", "list"): ("users", "user_list"),
    ("user", "remove"): ("users", "user_remove"),
    ("user", "password"): ("users", "user_password"),
    ("user", "enable"): ("users", "user_2fa_enable"),
    ("user", "disable"): ("users", "user_2fa_disable"),
    ("token", "create"): ("tokens", "token_create"),
    ("token", "list"): ("tokens", "token_list"),
    ("token", "revoke"): ("tokens", "token_revoke"),
    ("project", "grant"): ("projects", "project_grant"),
    ("project", "remove"): ("projects", "project_remove"),
    ("project", "import"): ("project_import", "project_import"),
    ("project", "list"): ("projects", "project_list"),
    ("publisher", "add"): ("publishers", "publisher_add"),
    ("publisher", "list"): ("publishers", "publisher_list"),
    ("publisher", "remove"): ("publishers", "publisher_remove"),
}


def _command(group: str, action: str) -> Command:
    """A command's function, its module imported only now: a command loads what it uses and nothing more."""
    module, name = COMMANDS[(group, action)]
    command: Command = getattr(importlib.import_module(f"gateway.cli.{module}"), name)
    return command
