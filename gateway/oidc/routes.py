"""Trusted publishing's routes at the root of the host, where `uv publish`, the PyPA publish action and twine's
helpers call them (`GET /_/oidc/audience`, `POST /_/oidc/mint-token` and its legacy `/_/oidc/github/mint-token`,
`POST /_/oidc/burn-token`), answered in PyPI's JSON: 200 `{"success": true, "token", "expires"}`, and every
refusal 422 `{"message": "Token request failed", "errors": [{"code", "description"}]}`."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.oidc.exchange import ExchangeRefused
from gateway.services import services

MAX_PAYLOAD = 64 * 1024  # an ID token is a few KiB
PAYLOAD = 'the body must be the JSON object {"token": "<token>"}'


def setup(app: web.Application) -> None:
    app.router.add_get("/_/oidc/audience", audience)
    app.router.add_post("/_/oidc/mint-token", mint_token)
    app.router.add_post("/_/oidc/github/mint-token", mint_token)
    app.router.add_post("/_/oidc/burn-token", burn_token)


async def audience(request: web.Request) -> web.Response:
    exchange = services(request).trusted_publishing
    if not exchange.enabled:
        return web.json_response({"message": "Trusted publishing functionality not enabled"}, status=403)
    return web.json_response({"audience": exchange.config.audience})


async def mint_token(request: web.Request) -> web.Response:
    svc = services(request)
    exchange = svc.trusted_publishing
    issuer = "unknown"
    try:
        id_token = await _token_of(request)
        issuer = exchange.issuer_label(id_token)
        minted = await exchange.mint(id_token)
    except ExchangeRefused as refused:
        svc.metrics.oidc_exchanges.labels(refused.code, issuer).inc()
        return _refused(refused)
    svc.metrics.oidc_exchanges.labels("minted", minted.issuer).inc()
    return web.json_response({"success": True, "token": minted.token, "expires": minted.expires})


async def burn_token(request: web.Request) -> web.Response:
    """202 whether or not the token was one to burn, as PyPI answers."""
    try:
        token = await _token_of(request)
    except ExchangeRefused as refused:
        return _refused(refused)
    await services(request).trusted_publishing.burn(token)
    return web.json_response({"success": True}, status=202)


async def _token_of(request: web.Request) -> str:
    body = b""
    while chunk := await request.content.read(MAX_PAYLOAD + 1 - len(body)):
        body += chunk
        if len(body) > MAX_PAYLOAD:
            raise ExchangeRefused("invalid-payload", f"payload too large: {PAYLOAD}")
    try:
        payload: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise ExchangeRefused("invalid-payload", f"payload is not JSON: {PAYLOAD}") from None
    token = payload.get("token") if isinstance(payload, dict) else None
    # An ID token and a minted token are ASCII; JSON may carry a lone surrogate, which no encoder takes.
    if not isinstance(token, str) or not token or not token.isascii():
        raise ExchangeRefused("invalid-payload", PAYLOAD)
    return token


def _refused(refused: ExchangeRefused) -> web.Response:
    body = {"message": "Token request failed", "errors": [{"code": refused.code, "description": refused.description}]}
    return web.json_response(body, status=422)
