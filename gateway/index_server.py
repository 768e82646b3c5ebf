"""The embedded index process: pypiserver's WSGI app under waitress, run by `embedded.EmbeddedIndex`.

Why not `pypi-server run`: its CLI cannot raise waitress's 1 GiB body limit, and its other servers
(gunicorn, wsgiref) store a truncated body and kill slow uploads. Waitress reads a whole body before the
app sees it. The service password arrives on standard input, never in argv where `ps` would show it.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pypiserver
import waitress

from gateway.embedded import SERVICE_USER


def auther_for(password: str) -> Callable[[str, str], bool]:
    def check(username: str, given: str) -> bool:
        user_ok = hmac.compare_digest(username.encode(), SERVICE_USER.encode())
        return hmac.compare_digest(given.encode(), password.encode()) and user_ok

    return check


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.index_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-body", type=int, required=True)
    parser.add_argument("root", type=Path)
    args = parser.parse_args(argv)
    password = sys.stdin.readline().strip()
    if not password:
        sys.exit("index_server: no service password on standard input")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    app = pypiserver.app(
        roots=[args.root],
        authenticate=["update"],
        password_file=None,
        auther=auther_for(password),
        disable_fallback=True,
        health_endpoint="/health",
    )
    waitress.serve(app, host="127.0.0.1", port=args.port, threads=8, max_request_body_size=args.max_body, ident=None)


if __name__ == "__main__":
    main()
