"""PyPI-format API tokens: `<prefix>-<base64url macaroon v2>` carrying Warehouse's caveats.

Tokens are minted exactly as Warehouse mints them (pymacaroons, MACAROON_V2), so a holder can attenuate one offline
with standard macaroon tooling, and every caveat is checked, whether we added it or the holder did.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

import pymacaroons

from gateway import crypto

TOKEN_SECRET_BYTES = 32
_MALFORMED = "malformed macaroon"
_INVALID_FIELDS = "invalid values for fields"
_OUTSIDE_PROJECT = "project-scoped token used outside of a project context"


class InvalidTokenError(Exception):
    """A token that is malformed, forged or not valid here; `str()` is the reason shown to the user."""


@dataclass(frozen=True, slots=True)
class VerifyContext:
    """What a token is checked against: its owner, the project acted on (None outside one), the time, and the action.

    `listing` is set for a read of the index root alone: project caveats then narrow *what is listed* (the caller
    checks each listed project with its own context) instead of refusing the request.
    """

    user_id: str
    project: str | None  # PEP 503 normalized name
    project_id: str | None  # None while the project does not exist yet
    now: int
    action: str = "upload"  # one of ACTIONS
    listing: bool = False
    publisher_id: str | None = None  # a trusted publisher's principal acting (`gateway.store.publishers`)
    publisher_project_ids: tuple[str, ...] = ()  # and the ids of its projects


# What a token can be used for; the gateway grants these (the store's `tokens.permissions`), caveats only narrow.
READ = "read"
UPLOAD = "upload"
ACTIONS = (READ, UPLOAD)


# NOTE: A caveat travels as the JSON array `[TAG, *fields]`, with fields in the order they are defined in each class
# below; tags and fields are Warehouse's (warehouse/macaroons/caveats/__init__.py), so tokens stay readable by its
# tooling. This means that fields cannot be reordered or deleted, and that new fields *must* be added at the end of
# the class. New fields *must* also include a default value (and `_from_array` must learn to fill it in). If a change
# can't be made under these constraints, then a new caveat class (and tag) must be created instead.


@dataclass(frozen=True, slots=True)
class Expiration:
    """Valid from `not_before` (inclusive) until `expires_at` (exclusive), both unix seconds."""

    tag: ClassVar[int] = 0
    expires_at: int
    not_before: int

    def failure(self, context: VerifyContext) -> str | None:
        return None if self.not_before <= context.now < self.expires_at else "token is expired"


@dataclass(frozen=True, slots=True)
class ProjectName:
    """Valid only for uploads to these projects (PEP 503 normalized names)."""

    tag: ClassVar[int] = 1
    normalized_names: tuple[str, ...]

    def failure(self, context: VerifyContext) -> str | None:
        if context.project is None:
            return None if context.listing else _OUTSIDE_PROJECT
        return None if context.project in self.normalized_names else _not_valid_for(context.project)


@dataclass(frozen=True, slots=True)
class ProjectID:
    """Valid only for uploads to these projects (store ids), so a deleted and re-registered name does not match."""

    tag: ClassVar[int] = 2
    project_ids: tuple[str, ...]

    def failure(self, context: VerifyContext) -> str | None:
        if context.project is None:
            return None if context.listing else _OUTSIDE_PROJECT
        return None if context.project_id in self.project_ids else _not_valid_for(context.project)


@dataclass(frozen=True, slots=True)
class RequestUser:
    """Valid only for this user, so a token row moved to another account is worthless."""

    tag: ClassVar[int] = 3
    user_id: str

    def failure(self, context: VerifyContext) -> str | None:
        return None if context.user_id == self.user_id else "current user does not match user restriction in token"


@dataclass(frozen=True, slots=True)
class OIDCPublisher:
    """Valid only for this trusted publisher acting, in a project (the minted token's projects are its `ProjectID`
    caveat): Warehouse's tag 4, `[4, "<publisher id>", null]` (the `null` is Warehouse's deprecated claims field)."""

    tag: ClassVar[int] = 4
    oidc_publisher_id: str
    oidc_claims: None = None

    def failure(self, context: VerifyContext) -> str | None:
        if context.publisher_id is None:
            return "OIDC scoped token used outside of an OIDC identified request"
        if context.publisher_id != self.oidc_publisher_id:
            return "current OIDC publisher does not match publisher restriction in token"
        if context.project is None:
            return None if context.listing else "OIDC scoped token used outside of a project context"
        if context.project_id not in context.publisher_project_ids:
            return f"OIDC scoped token is not valid for project '{context.project}'"
        return None


# NOTE: the gateway's own caveats have *string* tags ("upload-gateway:…"): Warehouse's tags are JSON integers (0-4
# today, more to come), so no tag Warehouse adds can ever mean one of ours, and Warehouse refuses ours as an unknown
# tag. Like every caveat, they only narrow: what a token may do at all is granted by the gateway and kept in the store.


@dataclass(frozen=True, slots=True)
class Permissions:
    """Valid only for these actions, e.g. `["upload-gateway:permissions", ["read"]]`: a read-only copy of a token."""

    tag: ClassVar[str] = "upload-gateway:permissions"
    allowed: tuple[str, ...]

    def failure(self, context: VerifyContext) -> str | None:
        if context.action in self.allowed:
            return None
        return f"token is not valid for {context.action}: a caveat allows only {', '.join(self.allowed) or 'nothing'}"


Caveat: TypeAlias = Expiration | ProjectName | ProjectID | RequestUser | OIDCPublisher | Permissions


def _not_valid_for(project: str) -> str:
    return f"project-scoped token is not valid for project: {project!r}"


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # Warehouse's json.dumps arguments


def serialize(caveat: Caveat) -> bytes:
    """Warehouse's exact bytes for a caveat, e.g. `b"[0,50,10]"`."""
    return _ENCODER.encode(
        [caveat.tag, *(getattr(caveat, field.name) for field in dataclasses.fields(caveat))]
    ).encode()


def deserialize(data: str | bytes, *, user_id: str) -> Caveat:
    """Parse one caveat as Warehouse does, with strict types; raise InvalidTokenError with Warehouse's message.

    `user_id` is the token owner, whom the legacy `{"version": 1, "permissions": "user"}` caveat binds to.
    """
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays
        raise InvalidTokenError("caveat is not valid JSON") from None
    if isinstance(obj, dict):
        obj = _adapt_legacy(obj, user_id)
    return _from_array(obj)


def _adapt_legacy(data: dict[str, Any], user_id: str) -> object:
    """Map Warehouse's original object caveats to today's arrays; None (refused) for objects it would not adapt."""
    if data.get("version") == 1:
        permissions = data.get("permissions")
        if permissions == "user":
            return [RequestUser.tag, user_id]
        if isinstance(permissions, dict) and "projects" in permissions:
            return [ProjectName.tag, permissions["projects"]]
        return None
    if "exp" in data and "nbf" in data:
        return [Expiration.tag, data["exp"], data["nbf"]]
    if "project_ids" in data:
        return [ProjectID.tag, data["project_ids"]]
    return None


def _strict_int(value: object) -> int:
    if type(value) is int:  # not bool, not float: pydantic's StrictInt
        return value
    raise InvalidTokenError(_INVALID_FIELDS)


def _strict_str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise InvalidTokenError(_INVALID_FIELDS)


def _strict_str_list(value: object) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise InvalidTokenError(_INVALID_FIELDS)


def _null(value: object) -> None:
    """Warehouse's deprecated `oidc_claims`: only its null is understood (claims: a restriction unknown here)."""
    if value is None:
        return None
    raise InvalidTokenError(_INVALID_FIELDS)


def _action_list(value: object) -> tuple[str, ...]:
    """Known actions only: a word this version cannot interpret fails closed rather than being ignored."""
    actions = _strict_str_list(value)
    if not set(actions) <= set(ACTIONS):
        raise InvalidTokenError(_INVALID_FIELDS)
    return actions


_SCHEMAS: dict[int | str, tuple[Callable[..., Caveat], tuple[Callable[[object], object], ...]]] = {
    Expiration.tag: (Expiration, (_strict_int, _strict_int)),
    ProjectName.tag: (ProjectName, (_strict_str_list,)),
    ProjectID.tag: (ProjectID, (_strict_str_list,)),
    RequestUser.tag: (RequestUser, (_strict_str,)),
    OIDCPublisher.tag: (OIDCPublisher, (_strict_str, _null)),
    Permissions.tag: (Permissions, (_action_list,)),
}
# Trailing fields with a default, which Warehouse lets a caveat leave out.
_OPTIONAL_TRAILING = {OIDCPublisher.tag: 1}


def _from_array(obj: object) -> Caveat:
    """Build a caveat from `[TAG, *fields]`; unknown tags fail closed.

    A tag is Warehouse's integer or one of the gateway's strings; `True` is not the tag 1 (JSON tells them apart).

    Unlike Warehouse, extra trailing fields are refused rather than ignored: they could only be restrictions that
    this version does not know how to enforce.
    """
    if not isinstance(obj, list):
        raise InvalidTokenError("caveat must be an array")
    if not obj:
        raise InvalidTokenError("caveat array cannot be empty")
    tag, *values = obj
    schema = _SCHEMAS.get(tag) if type(tag) in (int, str) else None
    if schema is None:
        raise InvalidTokenError(f"caveat has unknown tag: {tag}")
    cls, parsers = schema
    if len(values) < len(parsers) - _OPTIONAL_TRAILING.get(tag, 0):
        raise InvalidTokenError("Not enough values")
    parsers = parsers[: len(values)]
    if len(values) > len(parsers):
        raise InvalidTokenError(_INVALID_FIELDS)
    return cls(*(parse_field(value) for parse_field, value in zip(parsers, values, strict=True)))


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A well-formed token, not yet verified: `token_id` is the store key under which its secret is found."""

    token_id: str
    macaroon: pymacaroons.Macaroon
    caveats: tuple[bytes, ...]  # embedded caveats, in order, UTF-8 JSON


def new_token_secret() -> bytes:
    """Per-token random bytes, stored by the caller next to the token's row."""
    return secrets.token_bytes(TOKEN_SECRET_BYTES)


def root_key(server_secret: bytes, token_secret: bytes) -> bytes:
    """The macaroon key: needs the token's secret (database) *and* the server secret (outside the database)."""
    return hmac.digest(crypto.subkey(server_secret, "token-root"), token_secret, hashlib.sha256)


def mint(*, prefix: str, location: str, token_id: str, key: bytes, caveats: Sequence[Caveat]) -> str:
    """Return the token string for the stored token `token_id`, with `caveats` embedded (as PyPI does)."""
    if not _is_canonical_uuid(token_id):
        raise ValueError(f"token id must be a lowercase hyphenated UUID, not {token_id!r}")
    macaroon = pymacaroons.Macaroon(location=location, identifier=token_id, key=key, version=pymacaroons.MACAROON_V2)
    for caveat in caveats:
        macaroon.add_first_party_caveat(serialize(caveat))
    return f"{prefix}-{macaroon.serialize()}"


def parse(token: str, *, prefix: str) -> ParsedToken:
    """Check a token's structure (no key needed); raise InvalidTokenError with Warehouse's message if malformed."""
    head, _, body = token.strip().partition("-")
    if head != prefix or not body:
        raise InvalidTokenError("malformed or nonexistent macaroon")
    macaroon = _deserialize(body)
    return ParsedToken(token_id=_token_id(macaroon), macaroon=macaroon, caveats=_caveat_ids(macaroon))


def _deserialize(body: str) -> Any:
    """Decode a V2 macaroon, accepting only its canonical encoding so that every other string is refused.

    pymacaroons' base64 decoding skips foreign characters and ignores trailing bytes, so without the round trip
    check many strings (with padding, spaces, a changed last character...) would decode to the same token.
    """
    try:
        macaroon = pymacaroons.Macaroon.deserialize(body)
        canonical = macaroon.version == pymacaroons.MACAROON_V2 and macaroon.serialize() == body
    except Exception as exc:  # pymacaroons also raises bare Exception (ecordell/pymacaroons#50)
        raise InvalidTokenError(_MALFORMED) from exc
    if not canonical:
        raise InvalidTokenError(_MALFORMED)
    return macaroon


def _token_id(macaroon: Any) -> str:
    try:
        token_id: str = macaroon.identifier_bytes.decode()
    except UnicodeDecodeError:
        raise InvalidTokenError(_MALFORMED) from None
    if not _is_canonical_uuid(token_id):
        raise InvalidTokenError(_MALFORMED)
    return token_id


def _is_canonical_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _caveat_ids(macaroon: Any) -> tuple[bytes, ...]:
    """Embedded caveats, which must be first-party (we cannot discharge others) and UTF-8 (JSON)."""
    ids = tuple(caveat.caveat_id_bytes for caveat in macaroon.caveats)
    if any(caveat.third_party() for caveat in macaroon.caveats) or not all(map(_is_utf8, ids)):
        raise InvalidTokenError(_MALFORMED)
    return ids


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def verify(parsed: ParsedToken, *, key: bytes, context: VerifyContext, stored_caveats: Sequence[Caveat] = ()) -> None:
    """Check every caveat, then the signature; raise InvalidTokenError naming every failed caveat, as Warehouse does.

    Caveats the holder added offline are checked like ours, and `stored_caveats` are enforced whether or not the
    token embeds them. Warehouse appends the stored caveats to the presented macaroon and has pymacaroons verify the
    whole chain; since appending only extends the chain from the presented signature, checking the stored caveats
    beside the embedded ones and the presented chain as it stands gives the same answer, several times faster.
    A stored caveat equal to an embedded one is checked once (Warehouse says "token is expired, token is expired"),
    and a failure two caveats share is said once: a project-scoped token carries the project's names and ids, and
    both refuse another project in the same words.
    """
    embedded = [_read(data, context.user_id) for data in parsed.caveats]
    stored = [caveat for caveat in stored_caveats if caveat not in embedded]
    errors = [reason for caveat in (*embedded, *stored) if (reason := _failure(caveat, context)) is not None]
    if errors:
        raise InvalidTokenError(", ".join(dict.fromkeys(errors)))
    if not signature_matches(parsed, key):
        raise InvalidTokenError("signatures do not match")


def _read(data: bytes, user_id: str) -> Caveat | InvalidTokenError:
    """A caveat, or why it cannot be read: reported with the other failures rather than instead of them."""
    try:
        return deserialize(data, user_id=user_id)
    except InvalidTokenError as exc:
        return exc


def _failure(caveat: Caveat | InvalidTokenError, context: VerifyContext) -> str | None:
    return str(caveat) if isinstance(caveat, InvalidTokenError) else caveat.failure(context)


def signature_matches(parsed: ParsedToken, key: bytes) -> bool:
    """Recompute the macaroon's HMAC chain, over the identifier and then each embedded caveat in turn.

    This is pymacaroons' Verifier (libmacaroons' scheme, first-party caveats only) without its per-caveat overhead;
    tests check it against the signatures pymacaroons produces.
    """
    signature = hmac.digest(
        hmac.digest(b"macaroons-key-generator", key, hashlib.sha256), parsed.macaroon.identifier_bytes, hashlib.sha256
    )
    for caveat in parsed.caveats:
        signature = hmac.digest(signature, caveat, hashlib.sha256)
    return hmac.compare_digest(signature.hex(), parsed.macaroon.signature)


def caveats_of(parsed: ParsedToken, user_id: str) -> list[Caveat]:
    """The caveats embedded in a token, ours and the holder's, e.g. to show its effective scope."""
    return [deserialize(data, user_id=user_id) for data in parsed.caveats]
