"""A simple page as the gateway serves it, from the page the index sent: bytes in, bytes and ETag out.

HTML is rewritten (`rewrite`); JSON is relayed rewritten when the index sent JSON, else built from its HTML
(`simple_json`). Pure and picklable, so the handler can run it in a worker thread or a worker process.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import GatewayError
from gateway.reads.negotiate import Kind
from gateway.reads.paths import IndexLayout
from gateway.reads.rewrite import file_links, rewrite_page, root_projects
from gateway.reads.simple_json import Known, project_json, relay_project_json, relay_root_json, root_json


@dataclass(frozen=True)
class Source:
    """The index's page: `project` None for the root; `known` is what the gateway recorded of the project's
    files ({lower-case filename: (size, upload time)})."""

    body: bytes
    content_type: str
    charset: str
    url: str
    project: str | None
    kind: Kind
    known: Mapping[str, tuple[int, float]]


def render(source: Source, layout: IndexLayout, public_url: str) -> tuple[bytes, str]:
    body = _body(source, layout, public_url)
    return body, '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


_PR_SET_PDEATHSIG = 1


def background_worker(gateway_pid: int) -> None:
    """The initializer of the worker processes that render large pages: they yield the CPU to the event loop's,
    and die with the gateway (killed, it cannot tell them to stop; they would wait for work forever), also when
    it died while they were starting."""
    os.nice(10)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != gateway_pid:
        os._exit(0)


def _body(source: Source, layout: IndexLayout, public_url: str) -> bytes:
    is_json = source.content_type.endswith("json")
    records = {name: Known(*record) for name, record in source.known.items()}
    if source.kind == "json" and is_json:
        try:
            if source.project is None:
                return root_json(relay_root_json(source.body))
            return relay_project_json(source.project, source.body, source.url, layout, public_url, records)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting past the parser's limit
            raise _bad_page("a JSON page that is not PEP 691") from None
    if is_json:
        raise _bad_page("JSON where HTML was asked for")
    page = rewrite_page(source.body, source.url, layout, public_url, charset=source.charset)
    if source.kind == "html":
        return page.body
    if source.project is None:
        return root_json(name for _, name in root_projects(page.links))
    return project_json(source.project, file_links(page.links), records)


def _bad_page(what: str) -> GatewayError:
    return GatewayError(502, f"The package index sent {what}; it is not served", "upstream_bad_page")
