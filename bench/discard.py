"""A discard index for the benchmarks: reads every upload body and drops it, answers every read with 404.

It measures the gateway's own ceiling, without an index's disk writes in the way.
"""

from __future__ import annotations

import argparse

from aiohttp import web


async def upload(request: web.Request) -> web.Response:
    async for _ in request.content.iter_any():
        pass
    return web.Response(text="OK")


async def read(request: web.Request) -> web.Response:
    if request.path == "/health":
        return web.Response(text="OK")
    return web.Response(status=404, text="not here")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=0)
    app.router.add_post("/{tail:.*}", upload)
    app.router.add_get("/{tail:.*}", read)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
