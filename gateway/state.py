"""What a running gateway holds, under one typed app key (shared by the upload path and the web UI)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from gateway.authentication import Authenticator, TokenSettings
from gateway.authorization import Authorizer
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.guard import Guard
from gateway.metrics import Metrics
from gateway.proxy import Upstream
from gateway.read_access import ReadGuard
from gateway.reads.handler import Reads
from gateway.store import Store
from gateway.upload.context import UploadContext
from gateway.upload.slots import UploadSlots


@dataclass
class Gateway:
    """What the app holds while it runs; built at start-up from the frozen config."""

    config: Config
    metrics: Metrics = field(default_factory=Metrics)
    store: Store | None = None
    upstream: Upstream | None = None
    authenticator: Authenticator | None = None
    authorizer: Authorizer | None = None
    token_settings: TokenSettings | None = None
    uploads: UploadContext | None = None
    reads: Reads | None = None
    read_guard: ReadGuard | None = None  # private reads (issue #14): the access decision of every read
    guard: Guard | None = None
    upload_slots: UploadSlots = field(init=False)

    def __post_init__(self) -> None:
        limits = self.config.limits
        self.upload_slots = UploadSlots(per_user=limits.max_uploads_per_user, total=limits.max_uploads)

    def ready(self) -> tuple[Store, Upstream, Authenticator, Authorizer]:
        if self.store is None or self.upstream is None or self.authenticator is None or self.authorizer is None:
            raise GatewayError(503, "The gateway is starting; try again in a moment", "not_ready")
        return self.store, self.upstream, self.authenticator, self.authorizer

    def throttle(self) -> Guard:
        if self.guard is None:
            raise GatewayError(503, "The gateway is starting; try again in a moment", "not_ready")
        return self.guard


GATEWAY = web.AppKey("gateway", Gateway)
