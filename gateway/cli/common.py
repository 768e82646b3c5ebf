"""What every command of the CLI shares: the one-line user mistake, who acts, and how a moment prints.

Light on purpose (no store, no server): `gateway.cli` imports it to parse arguments and print `--help`.
"""

from __future__ import annotations

import argparse
import os
import pwd
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.store import Store

Command: TypeAlias = "Callable[[Store, argparse.Namespace, Config], Awaitable[None]]"


class CommandError(Exception):
    """A user mistake: printed as one line, exit status 1."""


def actor() -> str:
    """Who acts from the command line, for the audit trail: `cli:` and the operating-system user running it (by
    its effective uid, not $USER)."""
    try:
        return f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"
    except KeyError:
        return f"cli:uid {os.geteuid()}"


def _when(stamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)) if stamp is not None else None
