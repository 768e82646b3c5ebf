"""A package index in the test's own event loop, for the in-process tests: it records what reached it and can
misbehave on purpose.

It speaks like pypiserver (uploads POSTed to `/`, pages under `/simple/`, files under `/packages/`) or like devpi
(uploads POSTed to `/svc/dev/`, pages under `/svc/dev/+simple/`, files under `/svc/dev/+f/`); both keep files in
memory, answer an upload of a file they hold with 409 and require the gateway's service credential to upload.
`fault` makes every upload go wrong one way (`Fault`); `race` makes the next upload find its file stored meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from aiohttp import web
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

USERNAME, PASSWORD = "index-service", "index-service-password"
DEVPI_INDEX = "svc/dev/"


@dataclass(frozen=True)
class Received:
    """One upload as the index read it: the form's fields, the file and the headers it came with."""

    path: str
    headers: dict[str, str]
    fields: dict[str, list[str]]
    filename: str | None
    content: bytes

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")


@dataclass(frozen=True)
class Fault:
    """How the index answers every upload: `status` with `text` (after reading the whole body, unless `early`),
    a connection reset once the body is read (`reset`), or the answer only after `delay` seconds."""

    status: int = 200
    text: str = ""
    early: bool = False
    reset: bool = False
    delay: float = 0.0


@dataclass
class FakeIndex:
    flavour: Literal["pypiserver", "devpi"] = "pypiserver"
    fault: Fault | None = None
    # Called with the upload the index is about to store; `race` stores its file first (another uploader won).
    before_store: Callable[[Received], Awaitable[None]] | None = None
    race: bool = False
    files: dict[str, bytes] = field(default_factory=dict)  # filename -> bytes, every project
    uploads: list[Received] = field(default_factory=list)  # every upload POST that arrived whole
    reads: list[str] = field(default_factory=list)  # the path of every GET
    url: str = ""  # set by `serve`: the base URL, ending in '/'

    @property
    def upload_path(self) -> str:
        return "/" if self.flavour == "pypiserver" else "/" + DEVPI_INDEX

    @property
    def simple_path(self) -> str:
        return "/simple/" if self.flavour == "pypiserver" else f"/{DEVPI_INDEX}+simple/"

    def upstream(self, password_file: str) -> dict[str, object]:
        """The gateway's [upstream] section for this index."""
        if self.flavour == "pypiserver":
            return {"url": self.url, "username": USERNAME, "password_file": password_file}
        return {
            "url": self.url,
            "upload_url": self.url + DEVPI_INDEX,
            "simple_url": self.url + DEVPI_INDEX + "+simple/",
            "username": USERNAME,
            "password_file": password_file,
        }

    def project_files(self, project: str) -> list[str]:
        return sorted(name for name in self.files if _project(name) == canonicalize_name(project))

    def app(self) -> web.Application:
        app = web.Application(client_max_size=2**30)
        app.router.add_post(self.upload_path, self._upload)
        app.router.add_get(self.simple_path, self._root)
        app.router.add_get(self.simple_path + "{project}/", self._project_page)
        app.router.add_get(self._file_path() + "{tail:.*}", self._file)
        return app

    def _file_path(self) -> str:
        return "/packages/" if self.flavour == "pypiserver" else f"/{DEVPI_INDEX}+f/"

    def _file_url(self, filename: str) -> str:
        if self.flavour == "pypiserver":
            return f"/packages/{filename}"
        digest = hashlib.sha256(self.files[filename]).hexdigest()
        return f"/{DEVPI_INDEX}+f/{digest[:3]}/{digest[3:16]}/{filename}"

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        fault = self.fault
        if fault is not None and fault.early:
            return web.Response(status=fault.status, text=fault.text)
        if request.headers.get("Authorization") != aiohttp.encode_basic_auth(USERNAME, PASSWORD):
            return web.Response(status=401, text="Unauthorized")
        received = await _read_upload(request)
        self.uploads.append(received)
        if fault is not None:
            return await _misbehave(request, fault)
        if received.filename is None or not received.fields.get(":action") == ["file_upload"]:
            return web.Response(status=400, text="Missing 'content' file field!")
        if self.before_store is not None:
            await self.before_store(received)
        if self.race:
            self.race = False
            self.files[received.filename] = received.content
        if received.filename in self.files:
            if self.flavour == "pypiserver":
                return web.Response(status=409, text=f"Package '{received.filename}' already exists!\n")
            return web.Response(status=409, text=f"{received.filename} already exists in non-volatile index")
        self.files[received.filename] = received.content
        return web.Response(text="" if self.flavour == "pypiserver" else "upload successful")

    async def _root(self, request: web.Request) -> web.Response:
        self.reads.append(request.path)
        projects = sorted({_project(name) for name in self.files})
        links = "".join(f'<a href="{project}/">{project}</a>\n' for project in projects)
        return web.Response(text=f"<html><body>\n{links}</body></html>", content_type="text/html")

    async def _project_page(self, request: web.Request) -> web.Response:
        self.reads.append(request.path)
        project = request.match_info["project"]
        listed = self.project_files(project)
        if not listed:
            return web.Response(status=404, text="Not Found")
        links = "".join(
            f'<a href="{self._file_url(name)}#sha256={hashlib.sha256(self.files[name]).hexdigest()}">{name}</a>\n'
            for name in listed
        )
        return web.Response(text=f"<html><body>\n{links}</body></html>", content_type="text/html")

    async def _file(self, request: web.Request) -> web.Response:
        self.reads.append(request.path)
        name = request.path.rsplit("/", 1)[-1]
        if name not in self.files or self._file_url(name) != request.path:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=self.files[name], content_type="application/octet-stream")


async def _read_upload(request: web.Request) -> Received:
    fields: dict[str, list[str]] = {}
    filename, content = None, b""
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        assert isinstance(part, aiohttp.BodyPartReader)
        if part.filename is not None:
            filename, content = part.filename, bytes(await part.read())
        else:
            fields.setdefault(part.name or "", []).append(await part.text())
    return Received(request.path, dict(request.headers), fields, filename, content)


async def _misbehave(request: web.Request, fault: Fault) -> web.StreamResponse:
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.reset:
        assert request.transport is not None
        request.transport.abort()
        raise asyncio.CancelledError
    return web.Response(status=fault.status, text=fault.text)


def _project(filename: str) -> str:
    name = parse_wheel_filename(filename)[0] if filename.endswith(".whl") else parse_sdist_filename(filename)[0]
    return str(name)
