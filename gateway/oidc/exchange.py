"""The exchange of trusted publishing: a CI job's ID token for a 15-minute upload token of the publisher it
matches, as PyPI does it (`../shared/reference/trusted-publishing.md` §1.4-1.5).

The ID token is verified (`gateway.oidc.verify`), matched against the publishers registered with its issuer
(`gateway.oidc.claims`; a publisher is bound to the configured issuer it was added for, by name and URL, so a
token of another issuer, or of a URL the name was pointed at later, never matches it), its `jti` spent once in
the store (replays refused on every replica), and a token minted for the publisher's principal with Warehouse's
caveats. A pending publisher that matches creates its project first, owned by whoever registered it, unless the
project exists meanwhile (on the index or in the gateway) or another user's upload is creating it. Every refusal
is an `ExchangeRefused` with Warehouse's code and description; the routes render it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import jwt

from gateway import accounts
from gateway.authentication import Authenticator, TokenSettings
from gateway.config import OIDCConfig, OIDCIssuer
from gateway.credentials import TokenCredentials
from gateway.errors import GatewayError
from gateway.oidc import claims as publisher_claims
from gateway.oidc.keys import KeySets
from gateway.oidc.verify import TokenRefused, verify
from gateway.store import PendingPublisher, ProjectBeingCreated, Publisher, Store

MINTED_LIFETIME = 900  # seconds: PyPI's 15 minutes
# A `jti` is refused again until its token could no longer verify anywhere: its expiry, the verifier's leeway, and
# a margin for replicas' clocks that disagree.
JTI_LEEWAY = 30 + 300
EXISTS = "valid token, but project already exists"


class ExchangeRefused(Exception):
    """A refused exchange: Warehouse's error `code` and `description`, answered 422."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


@dataclass(frozen=True)
class Minted:
    token: str
    expires: int
    publisher: Publisher
    issuer: str


class TrustedPublishing:
    """The exchange over the store and the issuers' keys; `project_listed(name)` asks the index whether a
    project exists there (a pending publisher must not take a project the gateway has not imported)."""

    def __init__(
        self,
        config: OIDCConfig,
        store: Store,
        keys: KeySets,
        settings: TokenSettings,
        authenticator: Authenticator,
        project_listed: Callable[[str], Awaitable[bool]],
    ) -> None:
        self.config = config
        self._store = store
        self._keys = keys
        self._settings = settings
        self._authenticator = authenticator
        self._project_listed = project_listed

    @property
    def enabled(self) -> bool:
        return bool(self.config.issuers)

    def issuer_label(self, id_token: str) -> str:
        """The configured issuer the token names (unverified: for the metrics' label only), or "unknown"."""
        try:
            named = jwt.decode(id_token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return "unknown"
        issuer = self.config.issuer_at(named) if isinstance(named, str) else None
        return issuer.name if issuer is not None else "unknown"

    async def mint(self, id_token: str) -> Minted:
        """The minted token for `id_token`, or `ExchangeRefused`."""
        if not self.enabled:
            raise ExchangeRefused("not-enabled", "trusted publishing functionality not enabled")
        now = time.time()
        try:
            issuer, token_claims = await verify(id_token, self.config, self._keys, now=now)
        except TokenRefused as refused:
            raise ExchangeRefused(refused.code, refused.description) from None
        publisher = await self._publisher(issuer, token_claims)
        jti = str(token_claims["jti"])
        expires = float(token_claims["exp"]) + JTI_LEEWAY
        if not await self._store.use_once(f"oidc-jti:{issuer.url}", jti, expires=expires):
            raise ExchangeRefused("invalid-reuse-token", "invalid token: already used")
        return await self._mint(issuer, publisher, token_claims)

    async def _publisher(self, issuer: OIDCIssuer, token_claims: Mapping[str, Any]) -> Publisher:
        found = await self._registered(issuer, token_claims)
        if isinstance(found, Publisher):
            return found
        kind = issuer.kind
        waiting = await self._store.pending_publishers_of(time.time(), issuer=(issuer.name, issuer.url))
        pending = publisher_claims.find(kind, _candidates(kind, waiting), token_claims, issuer_url=issuer.url)
        if isinstance(pending, str):
            raise ExchangeRefused("invalid-publisher", f"valid token, but no corresponding publisher ({found})")
        return await self._reify(issuer, token_claims, next(p for p in waiting if p.id == pending[0]))

    async def _registered(self, issuer: OIDCIssuer, token_claims: Mapping[str, Any]) -> Publisher | str:
        """The publisher of `issuer` the claims match, or why none does."""
        kind = issuer.kind
        registered = await self._store.publishers_of(issuer=(issuer.name, issuer.url))
        found = publisher_claims.find(kind, _candidates(kind, registered), token_claims, issuer_url=issuer.url)
        return found if isinstance(found, str) else next(p for p in registered if p.id == found[0])

    async def _reify(self, issuer: OIDCIssuer, token_claims: Mapping[str, Any], waiting: PendingPublisher) -> Publisher:
        """The publisher `waiting` becomes. When another exchange reified it meanwhile (jobs of one release that
        mint at once), the claims match the publisher it became."""
        if await self._project_listed(waiting.project):
            if await self._store.remove_publisher(waiting.id, by="trusted-publishing") is None:
                # Gone already: another job's exchange reified it, and its upload is what the index lists.
                return await self._reified_meanwhile(issuer, token_claims)
            raise ExchangeRefused("invalid-pending-publisher", EXISTS)
        try:
            reified = await self._store.reify_pending(waiting)
        except ProjectBeingCreated as busy:
            raise ExchangeRefused("invalid-pending-publisher", f"valid token, but {busy}") from None
        return reified if reified is not None else await self._reified_meanwhile(issuer, token_claims)

    async def _reified_meanwhile(self, issuer: OIDCIssuer, token_claims: Mapping[str, Any]) -> Publisher:
        found = await self._registered(issuer, token_claims)
        if isinstance(found, str):
            raise ExchangeRefused("invalid-pending-publisher", EXISTS)
        return found

    async def _mint(self, issuer: OIDCIssuer, publisher: Publisher, token_claims: Mapping[str, Any]) -> Minted:
        principal = await self._store.get_user_by_id(publisher.id)
        project = (await self._store.project_access(publisher.project, publisher.id))[0]
        if principal is None or project is None:  # removed while the exchange ran
            raise ExchangeRefused("invalid-publisher", "valid token, but no corresponding publisher (removed)")
        run = publisher_claims.run_claims(issuer.kind, token_claims)
        described = accounts.describe_publisher(publisher.kind, publisher.fields)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        token, row = await accounts.mint_publisher_token(
            self._store,
            self._settings,
            principal,
            project,
            description=f"OpenID token: {described} ({stamp})",
            lifetime=MINTED_LIFETIME,
            run=run,
            audit={
                "publisher": publisher.id,
                "issuer": issuer.name,
                "issuer_url": issuer.url,
                "project": project.name,
                "run": run,
            },
        )
        assert row.expires is not None
        return Minted(token, int(row.expires), publisher, issuer.name)

    async def burn(self, token: str) -> None:
        """Revoke a token this exchange minted, for its holder that is done with it; anything else is left alone
        (PyPI answers 202 either way)."""
        try:
            identity = await self._authenticator.authenticate(TokenCredentials(token))
        except GatewayError:
            return
        if identity.user.kind != "publisher" or identity.token is None:
            return
        await self._store.revoke_token(identity.token.id, by=identity.user.name)
        self._authenticator.forget(identity.token.id)


def _parsed(kind: str, fields: Mapping[str, str]) -> publisher_claims.Publisher:
    return publisher_claims.parse_publisher(cast(publisher_claims.Kind, kind), fields)


def _candidates(
    kind: str, rows: list[Publisher] | list[PendingPublisher]
) -> list[tuple[str, publisher_claims.Publisher]]:
    return [(row.id, _parsed(kind, row.fields)) for row in rows if row.kind == kind]
