"""What the gateway holds, under typed app keys: its config and metrics from `create_app` on, and once
`app.lifecycle` has opened every resource, the one immutable `Services` its handlers read."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.authentication import Authenticator, TokenSettings
from gateway.authorization import Authorizer
from gateway.config import Config
from gateway.guard import Guard
from gateway.metrics import Metrics
from gateway.oidc.exchange import TrustedPublishing
from gateway.proxy import Upstream
from gateway.reads.handler import Reads
from gateway.store import Store
from gateway.upload.context import UploadContext
from gateway.upload.slots import UploadSlots


@dataclass(frozen=True, slots=True)
class Services:
    """Everything the handlers (the upload path, the reads and the account pages) use, all of it open.

    Set before aiohttp freezes the app and before its server exists, so no request meets a gateway without it;
    never removed: the resources are closed at teardown, when no handler runs any more."""

    config: Config
    metrics: Metrics
    store: Store
    upstream: Upstream
    token_settings: TokenSettings
    authenticator: Authenticator
    authorizer: Authorizer
    guard: Guard
    reads: Reads
    uploads: UploadContext
    upload_slots: UploadSlots
    trusted_publishing: TrustedPublishing


CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)  # `connections.runner` hands them to the connection guard before start-up
SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    """The running gateway's services, for a handler of the gateway's app or of the account pages (its sub-app)."""
    return request.config_dict[SERVICES]
