"""An OpenID Connect issuer for tests, on loopback: the real wire of a CI system's token service, with its own keys.

`Issuer` is an aiohttp app (`app()`): the discovery document at `{url}/.well-known/openid-configuration`, the key
set (JWKS) at `{url}/jwks`, and GitHub Actions' ID-token request endpoint (`request_url`: GET with `audience=` and
`Authorization: bearer <request_token>`, answering `{"value": <JWT>}`), which `uv publish`, the `id` library and
the PyPA action call when `ACTIONS_ID_TOKEN_REQUEST_URL`/`_TOKEN` are set (`actions_environment()`). `token()`
signs any claims with the current key; `rotate()` changes keys; `fault` and `delay` make the issuer misbehave, and
`requests` records what the gateway fetched. Serve it in-process (`serve()`, an aiohttp test server on the test's
loop) or from a thread of its own (`serve_in_thread()`, for a gateway subprocess or a blocking client). Its URL may
have a path (`path="/api/actions"`, as Forgejo's).

`github_claims`, `gitlab_claims` and `forgejo_claims` are the claim sets those CI systems put in their ID tokens
(../shared/reference/trusted-publishing.md §1.11), with defaults that name one repository and one workflow run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt import api_jws as jws

from tests.harness.threaded_app import serve_in_thread

AUDIENCE = "upload-gateway"
SHA = "4f2b9c1d0e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c"
Fault = Literal[
    "unavailable",  # 503 for discovery and keys
    "redirect",  # discovery answers 302 to a copy of itself (which must not be followed)
    "not_json",
    "no_jwks_uri",
    "insecure_jwks_uri",  # the discovery document points at plain http on a public host
    "wrong_issuer",  # the discovery document names another issuer
    "no_keys",  # an empty key set
    "huge",  # a key set over 1 MiB, with its Content-Length
    "huge_chunked",  # the same, chunked: no length said beforehand
    "deep",  # a key set nested deeper than a JSON parser recurses
]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class _Omitted:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omitted()  # a claim or header given as OMIT is left out of the token


@dataclass(frozen=True)
class SigningKey:
    """A private key, its key id, and the algorithm it signs with (`alg` in its JWK unless `declare_alg` is off)."""

    private: PrivateKey
    algorithm: str
    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    declare_alg: bool = True

    def jwk(self) -> dict[str, Any]:
        """The public JWK, as an issuer's key set lists it."""
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        public = json.loads(algorithm.to_jwk(self.private.public_key()))
        public.update(kid=self.kid, use="sig")
        if self.declare_alg:
            public["alg"] = self.algorithm
        else:
            public.pop("alg", None)
        return dict(public)


def rsa_key(algorithm: str = "RS256", *, bits: int = 2048, declare_alg: bool = True) -> SigningKey:
    return SigningKey(rsa.generate_private_key(65537, bits), algorithm, declare_alg=declare_alg)


def ec_key(algorithm: str = "ES256") -> SigningKey:
    curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1()}[algorithm]
    return SigningKey(ec.generate_private_key(curve), algorithm)


def ed25519_key() -> SigningKey:
    return SigningKey(ed25519.Ed25519PrivateKey.generate(), "EdDSA")


class Issuer:
    """One OIDC issuer. `url` (its `iss`) is known once it is served."""

    def __init__(self, *, path: str = "", audience: str = AUDIENCE, key: SigningKey | None = None) -> None:
        self.path = path.rstrip("/")
        self.audience = audience
        self.signing = key or rsa_key()
        self.published: list[SigningKey] = [self.signing]  # the key set lists these
        self.extra_entries: list[Any] = []  # and these, as they are (keys of other kinds, garbage)
        self.base_url = ""  # "http://127.0.0.1:PORT", set by serve()/serve_in_thread()
        self.fault: Fault | None = None
        self.delay = 0.0  # seconds each discovery and key set answer waits first
        self.requests: list[str] = []  # "discovery" or "jwks", one per request the issuer answered
        self.request_token = secrets.token_urlsafe(24)  # ACTIONS_ID_TOKEN_REQUEST_TOKEN
        self.actions_claims: dict[str, Any] = github_claims()  # what the ID-token endpoint issues
        self.actions_audiences: list[str] = []  # the audiences it was asked for

    @property
    def url(self) -> str:
        assert self.base_url, "the issuer is not served yet"
        return self.base_url + self.path

    @property
    def jwks_url(self) -> str:
        return self.url + "/jwks"

    @property
    def request_url(self) -> str:
        """ACTIONS_ID_TOKEN_REQUEST_URL: with a query already, as GitHub's, so clients must append `audience=`."""
        return self.base_url + "/_actions/id-token?api-version=2.0"

    def actions_environment(self) -> dict[str, str]:
        """The variables a GitHub Actions job with `id-token: write` has, pointing at this issuer."""
        return {
            "GITHUB_ACTIONS": "true",
            "ACTIONS_ID_TOKEN_REQUEST_URL": self.request_url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token,
        }

    def token(
        self,
        claims: Mapping[str, Any] | None = None,
        *,
        now: float | None = None,
        lifetime: int = 300,
        key: SigningKey | None = None,
        header: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        """A JWT signed with `key` (default: the current one): `claims`, then `iss`, `aud`, `iat`, `nbf`, `exp`
        (`lifetime` after `now`, default the clock) and a fresh `jti` where `claims` has none, then `overrides`;
        a claim or `header` entry given as OMIT is left out. The header has `kid` and `alg` of the key."""
        key = key or self.signing
        issued = int(time.time() if now is None else now)
        payload: dict[str, Any] = {
            "iss": self.url,
            "aud": self.audience,
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime,
            "jti": str(uuid.uuid4()),
            **(claims or {}),
            **overrides,
        }
        headers = {"kid": key.kid, **(header or {})}
        claims_json = json.dumps({name: value for name, value in payload.items() if value is not OMIT})
        return jws.encode(  # JWS, not JWT: PyJWT's JWT encoder refuses some of the claims tests need (iss: 7)
            claims_json.encode(),
            key.private,
            algorithm=key.algorithm,
            headers={name: value for name, value in headers.items() if value is not OMIT},
        )

    def rotate(self, key: SigningKey | None = None, *, retire: bool = False) -> SigningKey:
        """Sign with a new key from now on, listed beside the old ones (or instead of them, `retire`)."""
        self.signing = key or rsa_key()
        self.published = [self.signing] if retire else [*self.published, self.signing]
        return self.signing

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(self.path + "/.well-known/openid-configuration", self._discovery)
        app.router.add_get(self.path + "/.well-known/openid-configuration-moved", self._moved)
        app.router.add_get(self.path + "/jwks", self._jwks)
        app.router.add_get("/_actions/id-token", self._id_token)
        return app

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[TestServer]:
        """Serve on the running loop, on 127.0.0.1; yields the server (`close()` it to take the issuer down)."""
        server = TestServer(self.app(), host="127.0.0.1")
        await server.start_server()
        self.base_url = f"http://127.0.0.1:{server.port}"
        try:
            yield server
        finally:
            await server.close()

    @contextlib.contextmanager
    def serve_in_thread(self) -> Iterator[Issuer]:
        with serve_in_thread(self.app()) as base:
            self.base_url = base.rstrip("/")
            yield self

    def discovery_document(self) -> dict[str, Any]:
        jwks_uri = "http://issuer.example.org/jwks" if self.fault == "insecure_jwks_uri" else self.jwks_url
        document: dict[str, Any] = {
            "issuer": self.url + "/elsewhere" if self.fault == "wrong_issuer" else self.url,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": sorted({key.algorithm for key in self.published}),
            "claims_supported": sorted({*self.actions_claims, "iss", "aud", "iat", "nbf", "exp", "jti"}),
        }
        if self.fault == "no_jwks_uri":
            del document["jwks_uri"]
        return document

    async def _answer(self, what: str) -> web.StreamResponse | None:
        """What every discovery and key set request goes through first: the record, the delay, the faults."""
        self.requests.append(what)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fault == "unavailable":
            return web.json_response({"message": "unavailable"}, status=503)
        if self.fault == "not_json":
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        return None

    async def _discovery(self, request: web.Request) -> web.StreamResponse:
        if (answer := await self._answer("discovery")) is not None:
            return answer
        if self.fault == "redirect":
            raise web.HTTPFound(self.url + "/.well-known/openid-configuration-moved")
        return web.json_response(self.discovery_document())

    async def _moved(self, request: web.Request) -> web.StreamResponse:
        self.requests.append("moved")
        return web.json_response(self.discovery_document())

    async def _jwks(self, request: web.Request) -> web.StreamResponse:
        if (answer := await self._answer("jwks")) is not None:
            return answer
        keys = [] if self.fault == "no_keys" else [*self.extra_entries, *(key.jwk() for key in self.published)]
        body = json.dumps({"keys": keys}).encode()
        if self.fault == "deep":
            body = b'{"keys": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        if self.fault in ("huge", "huge_chunked"):
            body = json.dumps({"keys": keys, "padding": "x" * 2**20}).encode()
        if self.fault == "huge_chunked":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for start in range(0, len(body), 64 * 1024):
                await response.write(body[start : start + 64 * 1024])
            await response.write_eof()
            return response
        return web.Response(body=body, content_type="application/json")

    async def _id_token(self, request: web.Request) -> web.StreamResponse:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip(), self.request_token):
            return web.json_response({"message": "Bad credentials"}, status=401)
        audience = request.query.get("audience") or f"https://github.com/{self.actions_claims['repository_owner']}"
        self.actions_audiences.append(audience)
        return web.json_response({"count": 1, "value": self.token(self.actions_claims, aud=audience)})


def unsigned_token(header: Mapping[str, Any], claims: Mapping[str, Any], *, hmac_key: bytes | None = None) -> str:
    """A compact JWT built by hand, for the tokens PyJWT will not make: `alg` "none" (no signature), or HS256 with
    `hmac_key` (e.g. the issuer's public key in PEM: the confusion attack)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = part(json.dumps(dict(header)).encode()) + "." + part(json.dumps(dict(claims)).encode())
    signature = b"" if hmac_key is None else hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + part(signature)


def github_claims(
    *,
    owner: str = "octo-org",
    owner_id: str = "123456",
    repository: str = "sampleproject",
    repository_id: str = "654321",
    workflow: str = "release.yml",
    workflow_dir: str = ".github/workflows",
    ref: str = "refs/heads/main",
    sha: str = SHA,
    environment: str = "",
    event_name: str = "push",
) -> dict[str, Any]:
    """The claims of a GitHub Actions ID token for `owner/repository`'s `workflow` run on `ref`."""
    full = f"{owner}/{repository}"
    workflow_ref = f"{full}/{workflow_dir}/{workflow}@{ref}"
    claims: dict[str, Any] = {
        "sub": f"repo:{full}:environment:{environment}" if environment else f"repo:{full}:ref:{ref}",
        "ref": ref,
        "ref_type": "tag" if ref.startswith("refs/tags/") else "branch",
        "ref_protected": "false",
        "sha": sha,
        "repository": full,
        "repository_id": repository_id,
        "repository_owner": owner,
        "repository_owner_id": owner_id,
        "repository_visibility": "public",
        "actor": "octocat",
        "actor_id": "583231",
        "run_id": "9876543210",
        "run_number": "42",
        "run_attempt": "1",
        "runner_environment": "github-hosted",
        "workflow": "Release",
        "workflow_ref": workflow_ref,
        "workflow_sha": sha,
        "job_workflow_ref": workflow_ref,
        "job_workflow_sha": sha,
        "event_name": event_name,
        "head_ref": "",
        "base_ref": "",
    }
    if environment:
        claims["environment"] = environment
    return claims


def forgejo_claims(
    *,
    owner: str = "octo-org",
    owner_id: str = "31",
    repository: str = "sampleproject",
    repository_id: str = "417",
    workflow: str = "release.yml",
    workflow_dir: str = ".forgejo/workflows",
    ref: str = "refs/heads/main",
    sha: str = SHA,
    environment: str = "",
    event_name: str = "push",
) -> dict[str, Any]:
    """A Forgejo Actions ID token's claims: GitHub's shape, with the immutable ids of Forgejo #12355 and the
    `sub` of a repository created since (`repo:OWNER-ID/REPO-ID:ref:REF`), and no GitHub-only claims."""
    claims = github_claims(
        owner=owner,
        owner_id=owner_id,
        repository=repository,
        repository_id=repository_id,
        workflow=workflow,
        workflow_dir=workflow_dir,
        ref=ref,
        sha=sha,
        environment=environment,
        event_name=event_name,
    )
    claims["sub"] = f"repo:{owner}-{owner_id}/{repository}-{repository_id}:ref:{ref}"
    for github_only in ("repository_visibility", "runner_environment", "job_workflow_sha"):
        del claims[github_only]
    return claims


def gitlab_claims(
    *,
    issuer_url: str = "https://gitlab.com",
    namespace: str = "octo-group",
    project: str = "sampleproject",
    ci_config_path: str = ".gitlab-ci.yml",
    ref: str = "main",
    ref_type: Literal["branch", "tag"] = "branch",
    sha: str = SHA,
    environment: str = "",
) -> dict[str, Any]:
    """The claims of a GitLab CI ID token for `namespace/project` on `ref`; `ci_config_ref_uri` begins with the
    host (and port) of `issuer_url`, as an instance names itself there."""
    project_path = f"{namespace}/{project}"
    ref_path = f"refs/heads/{ref}" if ref_type == "branch" else f"refs/tags/{ref}"
    claims: dict[str, Any] = {
        "sub": f"project_path:{project_path}:ref_type:{ref_type}:ref:{ref}",
        "namespace_id": "1001",
        "namespace_path": namespace,
        "project_id": "2002",
        "project_path": project_path,
        "user_id": "3003",
        "user_login": "octocat",
        "user_email": "octocat@example.org",
        "user_access_level": "maintainer",
        "pipeline_id": "40404",
        "pipeline_source": "push",
        "job_id": "50505",
        "ref": ref,
        "ref_type": ref_type,
        "ref_path": ref_path,
        "ref_protected": "true",
        "runner_id": 6,
        "runner_environment": "gitlab-hosted",
        "sha": sha,
        "project_visibility": "public",
        "ci_config_ref_uri": f"{urlsplit(issuer_url).netloc}/{project_path}//{ci_config_path}@{ref_path}",
        "ci_config_sha": sha,
    }
    if environment:
        claims.update(environment=environment, environment_protected="false", deployment_tier="production")
    return claims
