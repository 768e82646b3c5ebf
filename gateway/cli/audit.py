"""`audit`: the audit trail's security events, oldest first, as text or JSON lines."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import time

from gateway import escaping
from gateway.cli.common import CommandError, _when
from gateway.config import Config, parse_duration
from gateway.store import Store


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
            escaping.key_value(label, value)
            for label, value in (("user", event.user_name), ("token", event.token_id), ("project", event.project))
            if value
        ]
        detail = [escaping.key_value(key, value) for key, value in sorted(event.detail.items())]
        print(f"{_when(event.at)}  {escaping.printable(event.event):<24} {' '.join(who + detail)}".rstrip())
