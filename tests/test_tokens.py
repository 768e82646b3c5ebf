from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
from typing import Any

import pymacaroons
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymacaroons.exceptions import MacaroonInvalidSignatureException

from gateway.tokens import (
    Caveat,
    Expiration,
    InvalidTokenError,
    OIDCPublisher,
    Permissions,
    ProjectID,
    ProjectName,
    RequestUser,
    VerifyContext,
    caveats_of,
    deserialize,
    mint,
    new_token_secret,
    parse,
    root_key,
    serialize,
    verify,
)

PREFIX = "pypi"
LOCATION = "pypi.org"
TOKEN_ID = "5c1c8f2e-0c3a-4e8b-9a8e-1f2d3c4b5a69"
USER = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
PROJECT_ID = "9f0e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
SERVER_SECRET = b"server-secret-".ljust(32, b"!")
TOKEN_SECRET = bytes(range(32))
KEY = root_key(SERVER_SECRET, TOKEN_SECRET)
NOW = 1_700_000_000
BASE64URL = string.ascii_letters + string.digits + "-_"
FUZZ = settings(database=None, max_examples=200, deadline=None)


def context(
    *,
    user_id: str = USER,
    project: str | None = "demo",
    project_id: str | None = PROJECT_ID,
    now: int = NOW,
    action: str = "upload",
    listing: bool = False,
    publisher_id: str | None = None,
    publisher_project_ids: tuple[str, ...] = (),
) -> VerifyContext:
    return VerifyContext(
        user_id=user_id,
        project=project,
        project_id=project_id,
        now=now,
        action=action,
        listing=listing,
        publisher_id=publisher_id,
        publisher_project_ids=publisher_project_ids,
    )


def make_token(*caveats: Caveat, key: bytes = KEY, token_id: str = TOKEN_ID) -> str:
    return mint(prefix=PREFIX, location=LOCATION, token_id=token_id, key=key, caveats=caveats)


def outcome(token: str, *, key: bytes = KEY, stored: tuple[Caveat, ...] = (), **overrides: Any) -> str | None:
    """The refusal, or None when accepted; any exception other than InvalidTokenError fails the calling test."""
    try:
        verify(parse(token, prefix=PREFIX), key=key, context=context(**overrides), stored_caveats=stored)
    except InvalidTokenError as exc:
        return str(exc)
    return None


def parse_error(token: str) -> str:
    with pytest.raises(InvalidTokenError) as excinfo:
        parse(token, prefix=PREFIX)
    return str(excinfo.value)


def attenuate(token: str, *predicates: bytes) -> str:
    """What a holder does offline with plain pymacaroons: no key, no gateway code."""
    macaroon = pymacaroons.Macaroon.deserialize(token.removeprefix(f"{PREFIX}-"))
    for predicate in predicates:
        macaroon.add_first_party_caveat(predicate)
    return f"{PREFIX}-{macaroon.serialize()}"


def raw_token(macaroon: Any) -> str:
    return f"{PREFIX}-{macaroon.serialize()}"


class TestSerialization:
    @pytest.mark.parametrize(
        ("caveat", "expected"),
        [
            (Expiration(expires_at=50, not_before=10), b"[0,50,10]"),
            (ProjectName(normalized_names=("foo", "bar")), b'[1,["foo","bar"]]'),
            (ProjectID(project_ids=("123uuid", "456uuid")), b'[2,["123uuid","456uuid"]]'),
            (RequestUser(user_id="a uuid"), b'[3,"a uuid"]'),
            (ProjectName(normalized_names=()), b"[1,[]]"),
            # json.dumps escapes non-ASCII by default, in Warehouse too
            (ProjectName(normalized_names=("d\u00e9j\u00e0",)), b'[1,["d\\u00e9j\\u00e0"]]'),
        ],
    )
    def test_warehouse_bytes(self, caveat: Caveat, expected: bytes) -> None:
        assert serialize(caveat) == expected
        assert deserialize(expected, user_id=USER) == caveat


class TestDeserialization:
    @pytest.mark.parametrize(
        ("data", "expected"),
        [
            (b'{"exp": 50, "nbf": 10}', Expiration(expires_at=50, not_before=10)),
            (b'{"exp": 50, "nbf": 10, "other": 1}', Expiration(expires_at=50, not_before=10)),
            (b'{"version": 1, "permissions": {"projects": ["foo", "bar"]}}', ProjectName(("foo", "bar"))),
            (b'{"project_ids": ["123uuid", "456uuid"]}', ProjectID(("123uuid", "456uuid"))),
            (b'{"version": 1, "permissions": "user"}', RequestUser(USER)),
            (b"[0, 50, 10]", Expiration(expires_at=50, not_before=10)),
            ('[3,"caf\u00e9"]', RequestUser("caf\u00e9")),
        ],
    )
    def test_accepted(self, data: bytes | str, expected: Caveat) -> None:
        assert deserialize(data, user_id=USER) == expected

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b'{"version": 1}', "caveat must be an array"),
            (b'{"version": 1, "permissions": []}', "caveat must be an array"),
            (b'{"version": 1, "permissions": null}', "caveat must be an array"),
            (b'{"version": 1, "permissions": {"otherkey": "foo"}}', "caveat must be an array"),
            (b'{"version": 1, "exp": 50, "nbf": 10}', "caveat must be an array"),
            (b'{"exp": 1}', "caveat must be an array"),
            (b'{"nbf": 1}', "caveat must be an array"),
            (b"{}", "caveat must be an array"),
            (b'"foo"', "caveat must be an array"),
            (b"null", "caveat must be an array"),
            (b"5", "caveat must be an array"),
            (b"[]", "caveat array cannot be empty"),
            (b'[4,"publisher-uuid",{"sub":"x"}]', "invalid values for fields"),
            (b"[4,7]", "invalid values for fields"),
            (b"[4]", "Not enough values"),
            (b"[5]", "caveat has unknown tag: 5"),
            (b"[-1,1]", "caveat has unknown tag: -1"),
            (b'[true,["foo"]]', "caveat has unknown tag: True"),  # Warehouse's dict lookup would read this as tag 1
            (b'[1.0,["foo"]]', "caveat has unknown tag: 1.0"),
            (b'["1",["foo"]]', "caveat has unknown tag: 1"),
            (b'[[1],["foo"]]', "caveat has unknown tag: [1]"),
            (b"[0,5]", "Not enough values"),
            (b"[3]", "Not enough values"),
            (b'[0,"50",10]', "invalid values for fields"),
            (b"[0,true,10]", "invalid values for fields"),
            (b"[0,50.0,10]", "invalid values for fields"),
            (b"[0,50,null]", "invalid values for fields"),
            (b"[0,50,10,0]", "invalid values for fields"),  # Warehouse ignores extra fields; we fail closed
            (b'[1,"foo"]', "invalid values for fields"),
            (b'[1,["foo",1]]', "invalid values for fields"),
            (b'[1,{"foo":1}]', "invalid values for fields"),
            (b"[3,5]", "invalid values for fields"),
            (b'{"exp": "50", "nbf": 10}', "invalid values for fields"),
            (b'{"version": 1, "permissions": {"projects": "foo"}}', "invalid values for fields"),
            (b"[1,", "caveat is not valid JSON"),
            (b"\xff", "caveat is not valid JSON"),
            (b"", "caveat is not valid JSON"),
            (b"[" * 100_000 + b"]" * 100_000, "caveat is not valid JSON"),
        ],
    )
    def test_refused(self, data: bytes, message: str) -> None:
        with pytest.raises(InvalidTokenError) as excinfo:
            deserialize(data, user_id=USER)
        assert str(excinfo.value) == message


class TestMint:
    @pytest.mark.parametrize(
        ("location", "start"),
        [("pypi.org", "pypi-AgEIcHlwaS5vcmc"), ("test.pypi.org", "pypi-AgENdGVzdC5weXBpLm9yZw")],
    )
    def test_same_start_as_pypi_tokens(self, location: str, start: str) -> None:
        token = mint(prefix="pypi", location=location, token_id=TOKEN_ID, key=KEY, caveats=[RequestUser(USER)])
        assert token.startswith(start)

    def test_same_recipe_as_warehouse(self) -> None:
        caveats: list[Caveat] = [ProjectName(("demo",)), ProjectID((PROJECT_ID,))]
        macaroon = pymacaroons.Macaroon(
            location=LOCATION, identifier=TOKEN_ID, key=KEY, version=pymacaroons.MACAROON_V2
        )
        for caveat in caveats:
            macaroon.add_first_party_caveat(serialize(caveat))
        assert make_token(*caveats) == f"pypi-{macaroon.serialize()}"

    def test_signature_is_the_macaroon_hmac_chain(self) -> None:
        parsed = parse(make_token(ProjectName(("demo",)), RequestUser(USER)), prefix=PREFIX)
        signature = hmac.digest(
            hmac.digest(b"macaroons-key-generator", KEY, hashlib.sha256), TOKEN_ID.encode(), hashlib.sha256
        )
        for caveat in (b'[1,["demo"]]', f'[3,"{USER}"]'.encode()):
            signature = hmac.digest(signature, caveat, hashlib.sha256)
        assert parsed.macaroon.signature_bytes == signature.hex().encode()

    @pytest.mark.parametrize("token_id", ["not-a-uuid", TOKEN_ID.upper(), f"{{{TOKEN_ID}}}", TOKEN_ID.replace("-", "")])
    def test_token_id_must_be_a_canonical_uuid(self, token_id: str) -> None:
        with pytest.raises(ValueError, match="UUID"):
            make_token(token_id=token_id)

    def test_root_key_needs_both_secrets(self) -> None:
        keys = {
            root_key(SERVER_SECRET, TOKEN_SECRET),
            root_key(b"other".ljust(32, b"!"), TOKEN_SECRET),
            root_key(SERVER_SECRET, bytes(32)),
            TOKEN_SECRET,
        }
        assert len(keys) == 4
        assert root_key(SERVER_SECRET, TOKEN_SECRET) == KEY

    def test_new_token_secret(self) -> None:
        secrets = {new_token_secret() for _ in range(10)}
        assert len(secrets) == 10
        assert {len(secret) for secret in secrets} == {32}


def _body() -> str:
    """The body of a token whose signature happens to contain '-', so its standard-base64 twin differs."""
    body = make_token().removeprefix(f"{PREFIX}-")
    assert "-" in body
    return body


def _encoded(raw: bytes) -> str:
    return f"{PREFIX}-{base64.urlsafe_b64encode(raw).decode().rstrip('=')}"


def _third_party_caveat() -> str:
    macaroon = pymacaroons.Macaroon(location=LOCATION, identifier=TOKEN_ID, key=KEY, version=pymacaroons.MACAROON_V2)
    macaroon.add_third_party_caveat("https://auth.example", b"k" * 32, "discharge-id")
    return raw_token(macaroon)


def _binary_caveat() -> str:
    macaroon = pymacaroons.Macaroon(location=LOCATION, identifier=TOKEN_ID, key=KEY, version=pymacaroons.MACAROON_V2)
    macaroon.caveats.append(pymacaroons.Caveat(caveat_id=b"\xff[0,1,0]", version=pymacaroons.MACAROON_V2))
    return raw_token(macaroon)


def _with_identifier(identifier: bytes) -> str:
    return raw_token(
        pymacaroons.Macaroon(location=LOCATION, identifier=identifier, key=KEY, version=pymacaroons.MACAROON_V2)
    )


class TestParse:
    def test_fields(self) -> None:
        parsed = parse(make_token(ProjectName(("demo",)), RequestUser(USER)), prefix=PREFIX)
        assert parsed.token_id == TOKEN_ID
        assert parsed.caveats == (b'[1,["demo"]]', f'[3,"{USER}"]'.encode())

    def test_surrounding_whitespace_is_ignored(self) -> None:
        assert parse(f" \t{make_token()}\r\n", prefix=PREFIX).token_id == TOKEN_ID

    def test_other_prefix(self) -> None:
        token = mint(prefix="acme", location=LOCATION, token_id=TOKEN_ID, key=KEY, caveats=())
        assert parse(token, prefix="acme").token_id == TOKEN_ID
        assert parse_error(token) == "malformed or nonexistent macaroon"

    @pytest.mark.parametrize(
        "token",
        ["", " ", "pypi", "pypi-", f"PYPI-{_body()}", _body(), f"pypi_{_body()}", "-pypi-a"],
    )
    def test_malformed_or_nonexistent(self, token: str) -> None:
        assert parse_error(token) == "malformed or nonexistent macaroon"

    @pytest.mark.parametrize(
        "token",
        [
            make_token()[:-1],  # truncated
            make_token()[: len(make_token()) // 2],
            make_token() + "AA",  # trailing bytes after the signature
            make_token() + "=",  # padding
            make_token()[:20] + " " + make_token()[20:],
            f"pypi-pypi-{_body()}",
            f"{PREFIX}-{_body().translate(str.maketrans('-_', '+/'))}",  # standard base64 alphabet
            "pypi-!!!!",
            "pypi-AAAA",
            "pypi-A",
            "pypi-\ud800",
            "pypi-" + "\u00e9" * 8,
            "pypi-AgEIcHlwaS5vcmc",
            _encoded(b"\x02\x80"),  # pymacaroons raises a bare Exception here (ecordell/pymacaroons#50)
            _encoded(b"\x02\x01\x02\xff\xfe\x02\x01x\x00\x00\x00\x06\x00"),  # location is not UTF-8
            "pypi-" + pymacaroons.Macaroon(location=LOCATION, identifier=TOKEN_ID, key=KEY).serialize(),  # V1
            _with_identifier(b"not-a-uuid"),
            _with_identifier(TOKEN_ID.upper().encode()),
            _with_identifier(b"\xff" * 16),
            _third_party_caveat(),
            _binary_caveat(),
        ],
    )
    def test_malformed_macaroon(self, token: str) -> None:
        assert parse_error(token) == "malformed macaroon"

    def test_every_changed_character_is_refused(self) -> None:
        token = make_token(ProjectName(("demo",)), Expiration(NOW + 60, NOW - 60))
        assert outcome(token) is None
        start = len(PREFIX) + 1
        for index in range(start, len(token)):
            replacement = BASE64URL[(BASE64URL.index(token[index]) + 1) % len(BASE64URL)]
            changed = token[:index] + replacement + token[index + 1 :]
            assert outcome(changed) is not None or parse(changed, prefix=PREFIX).macaroon.location != LOCATION, index

    def test_location_is_an_unsigned_hint(self) -> None:
        """As on PyPI: macaroons do not sign their location, and nothing checks it."""
        macaroon = parse(make_token(RequestUser(USER)), prefix=PREFIX).macaroon
        macaroon.location = "elsewhere.example"
        assert outcome(raw_token(macaroon)) is None


class TestVerify:
    @pytest.mark.parametrize(
        "caveats",
        [
            (),
            (RequestUser(USER),),
            (ProjectName(("demo",)), ProjectID((PROJECT_ID,))),
            (ProjectName(("other", "demo")), Expiration(NOW + 1, NOW)),
        ],
    )
    def test_accepted(self, caveats: tuple[Caveat, ...]) -> None:
        assert outcome(make_token(*caveats), stored=caveats) is None
        assert outcome(make_token(), stored=caveats) is None
        assert outcome(make_token(*caveats)) is None

    @pytest.mark.parametrize(
        ("caveat", "overrides", "message"),
        [
            (Expiration(NOW + 60, NOW - 60), {"now": NOW + 60}, "token is expired"),
            (Expiration(NOW + 60, NOW - 60), {"now": NOW - 61}, "token is expired"),
            (Expiration(NOW + 60, NOW - 60), {"now": NOW + 59}, None),
            (Expiration(NOW + 60, NOW - 60), {"now": NOW - 60}, None),
            (Expiration(NOW, NOW + 1), {}, "token is expired"),
            (ProjectName(("demo",)), {"project": "other"}, "project-scoped token is not valid for project: 'other'"),
            (ProjectName(("demo",)), {"project": None}, "project-scoped token used outside of a project context"),
            (ProjectName(()), {}, "project-scoped token is not valid for project: 'demo'"),
            (
                ProjectID((PROJECT_ID,)),
                {"project_id": "other-id"},
                "project-scoped token is not valid for project: 'demo'",
            ),
            (ProjectID((PROJECT_ID,)), {"project_id": None}, "project-scoped token is not valid for project: 'demo'"),
            (ProjectID((PROJECT_ID,)), {"project": None}, "project-scoped token used outside of a project context"),
            (RequestUser(USER), {"user_id": "someone-else"}, "current user does not match user restriction in token"),
        ],
    )
    def test_caveat_table(self, caveat: Caveat, overrides: dict[str, Any], message: str | None) -> None:
        for token, stored in ((make_token(caveat), ()), (make_token(), (caveat,)), (make_token(caveat), (caveat,))):
            assert outcome(token, stored=stored, **overrides) == message

    def test_every_failure_is_reported_in_order(self) -> None:
        token = make_token(ProjectName(("demo",)), Expiration(NOW, NOW - 10))
        message = outcome(token, stored=(RequestUser(USER),), project="other", user_id="someone-else")
        assert message == (
            "project-scoped token is not valid for project: 'other', token is expired, "
            "current user does not match user restriction in token"
        )

    def test_stored_and_embedded_copies_report_once(self) -> None:
        assert outcome(make_token(Expiration(NOW, 0)), stored=(Expiration(NOW, 0),)) == "token is expired"

    def test_a_project_scoped_token_on_another_project_says_so_once(self) -> None:
        """Before: "… not valid for project: 'other', project-scoped token is not valid for project: 'other'" (the
        names caveat and the ids caveat both refused, in the same words)."""
        scoped = (ProjectName(("demo",)), ProjectID((PROJECT_ID,)))
        for token, stored in ((make_token(*scoped), ()), (make_token(), scoped), (make_token(*scoped), scoped)):
            message = outcome(token, stored=stored, project="other", project_id="other-id")
            assert message == "project-scoped token is not valid for project: 'other'"

    @pytest.mark.parametrize(
        "key",
        [root_key(b"another-server-secret".ljust(32, b"!"), TOKEN_SECRET), root_key(SERVER_SECRET, bytes(32)), b""],
    )
    def test_wrong_key(self, key: bytes) -> None:
        assert outcome(make_token(RequestUser(USER)), key=key) == "signatures do not match"

    def test_caveat_failures_take_precedence_over_the_signature(self) -> None:
        assert outcome(make_token(ProjectName(("demo",))), key=b"wrong", project="x") == (
            "project-scoped token is not valid for project: 'x'"
        )

    def test_unknown_caveat_tag_fails_closed(self) -> None:
        token = attenuate(make_token(RequestUser(USER)), b'[5,"publisher-uuid"]')
        assert outcome(token) == "caveat has unknown tag: 5"

    def test_an_oidc_caveat_binds_the_token_to_its_publisher_acting_in_a_project(self) -> None:
        """Warehouse's tag 4, as it puts it on the wire (`[4,"<id>",null]`) and with the null left out."""
        for predicate in (b'[4,"pub-1",null]', b'[4,"pub-1"]'):
            token = attenuate(make_token(), predicate)
            assert outcome(token, publisher_id="pub-1", publisher_project_ids=(PROJECT_ID,)) is None
            assert outcome(token, publisher_id="pub-1", publisher_project_ids=("another",)) == (
                "OIDC scoped token is not valid for project 'demo'"
            )
            assert outcome(token) == "OIDC scoped token used outside of an OIDC identified request"
            assert outcome(token, publisher_id="pub-2") == (
                "current OIDC publisher does not match publisher restriction in token"
            )
            assert outcome(token, publisher_id="pub-1", project=None, project_id=None) == (
                "OIDC scoped token used outside of a project context"
            )
        assert serialize(OIDCPublisher("pub-1")) == b'[4,"pub-1",null]'

    def test_legacy_user_caveat_binds_to_the_current_user(self) -> None:
        token = attenuate(make_token(), b'{"version": 1, "permissions": "user"}')
        assert outcome(token, user_id="anyone") is None

    def test_removing_a_caveat_breaks_the_signature(self) -> None:
        macaroon = parse(make_token(ProjectName(("demo",))), prefix=PREFIX).macaroon
        macaroon.caveats.clear()
        assert outcome(raw_token(macaroon), project="other") == "signatures do not match"

    def test_does_not_modify_the_parsed_token(self) -> None:
        parsed = parse(make_token(RequestUser(USER)), prefix=PREFIX)
        for _ in range(2):
            verify(parsed, key=KEY, context=context(), stored_caveats=[ProjectName(("demo",)), Expiration(NOW + 1, 0)])
        assert len(parsed.macaroon.caveats) == 1
        assert parsed.macaroon.serialize() == make_token(RequestUser(USER))[len(PREFIX) + 1 :]


class TestOfflineAttenuation:
    """A holder narrows a token with plain pymacaroons; the gateway honours exactly what was added."""

    @pytest.mark.parametrize(
        ("predicate", "overrides", "message"),
        [
            (b'[1,["one-project"]]', {"project": "one-project"}, None),
            (b'[1,["one-project"]]', {}, "project-scoped token is not valid for project: 'demo'"),
            (f"[0,{NOW - 1},{NOW - 100}]".encode(), {}, "token is expired"),
            (f"[0,{NOW + 100},{NOW}]".encode(), {}, None),
            (f"[0,{NOW + 200},{NOW + 100}]".encode(), {}, "token is expired"),
            (f'{{"exp": {NOW - 1}, "nbf": 0}}'.encode(), {}, "token is expired"),
            (f'[2,["{PROJECT_ID}"]]'.encode(), {}, None),
            (b'[2,["other-id"]]', {}, "project-scoped token is not valid for project: 'demo'"),
            (b'[3,"someone-else"]', {}, "current user does not match user restriction in token"),
            (b"not json", {}, "caveat is not valid JSON"),
        ],
    )
    def test_added_caveat_is_enforced(self, predicate: bytes, overrides: dict[str, Any], message: str | None) -> None:
        token = attenuate(make_token(RequestUser(USER)), predicate)
        assert outcome(token, stored=(RequestUser(USER),), **overrides) == message

    def test_shows_in_effective_scope(self) -> None:
        token = attenuate(
            make_token(RequestUser(USER)), b'[1,["one-project"]]', b'{"version": 1, "permissions": "user"}'
        )
        assert caveats_of(parse(token, prefix=PREFIX), "me") == [
            RequestUser(USER),
            ProjectName(("one-project",)),
            RequestUser("me"),
        ]

    def test_effective_scope_of_an_unreadable_caveat(self) -> None:
        parsed = parse(attenuate(make_token(), b"[9]"), prefix=PREFIX)
        with pytest.raises(InvalidTokenError, match=r"^caveat has unknown tag: 9$"):
            caveats_of(parsed, USER)


_POOL: list[Caveat] = [
    Expiration(NOW + 1, NOW),
    Expiration(NOW, NOW - 1),
    ProjectName(("demo",)),
    ProjectName(("other",)),
    ProjectID((PROJECT_ID,)),
    RequestUser(USER),
    RequestUser("someone-else"),
]
_OTHER_KEY = root_key(SERVER_SECRET, bytes(32))


def _warehouse_accepts(token: str, key: bytes, stored: list[Caveat]) -> bool:
    """Warehouse's way: append the stored caveats to the presented macaroon, then pymacaroons' Verifier."""
    macaroon = pymacaroons.Macaroon.deserialize(token.removeprefix(f"{PREFIX}-"))
    for caveat in stored:
        macaroon.add_first_party_caveat(serialize(caveat))
    verifier = pymacaroons.Verifier()
    verifier.satisfy_general(lambda predicate: outcome_of_caveat(predicate) is None)
    try:
        return bool(verifier.verify(macaroon, key))
    except MacaroonInvalidSignatureException:
        return False


def outcome_of_caveat(predicate: str) -> str | None:
    try:
        return deserialize(predicate, user_id=USER).failure(context())
    except InvalidTokenError as exc:
        return str(exc)


@settings(database=None, max_examples=300, deadline=None)
@given(
    embedded=st.lists(st.sampled_from(_POOL), max_size=3),
    added=st.lists(st.sampled_from([*map(serialize, _POOL), b'[4,"x"]', b"[0]"]), max_size=2),
    stored=st.lists(st.sampled_from(_POOL), max_size=3),
    key=st.sampled_from([KEY, _OTHER_KEY]),
)
def test_same_decision_as_warehouse(
    embedded: list[Caveat], added: list[bytes], stored: list[Caveat], key: bytes
) -> None:
    token = attenuate(make_token(*embedded, key=key), *added)
    assert (outcome(token, stored=tuple(stored)) is None) == _warehouse_accepts(token, KEY, stored)


@st.composite
def _mutated_tokens(draw: st.DrawFn) -> str:
    token = make_token(ProjectName(("demo",)), RequestUser(USER))
    index = draw(st.integers(0, len(token)))
    junk = draw(st.text(alphabet=BASE64URL + "=+/ .\x00\u00e9", max_size=3))
    cut = draw(st.integers(0, 3))
    return token[:index] + junk + token[index + cut :]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


class TestFuzz:
    """Whatever arrives in an Authorization header, the only failure is InvalidTokenError."""

    @FUZZ
    @given(st.text())
    def test_arbitrary_text(self, text: str) -> None:
        outcome(text)
        outcome(f"{PREFIX}-{text}")

    @FUZZ
    @given(st.text(alphabet=BASE64URL, min_size=1))
    def test_arbitrary_base64(self, body: str) -> None:
        outcome(f"{PREFIX}-Ag{body}")

    @FUZZ
    @given(_mutated_tokens())
    def test_mutated_token(self, token: str) -> None:
        outcome(token)

    @FUZZ
    @given(st.one_of(_json, st.lists(_json, min_size=1).map(lambda values: [_steer_tag(values[0]), *values[1:]])))
    def test_arbitrary_caveat(self, value: object) -> None:
        token = attenuate(make_token(), json.dumps(value).encode())
        if outcome(token) is None:
            assert len(caveats_of(parse(token, prefix=PREFIX), USER)) == 1

    @FUZZ
    @given(st.binary(max_size=120))
    def test_arbitrary_v2_bytes(self, raw: bytes) -> None:
        outcome(_encoded(b"\x02" + raw))

    @FUZZ
    @given(st.binary(max_size=64))
    def test_arbitrary_caveat_bytes(self, data: bytes) -> None:
        macaroon = pymacaroons.Macaroon(
            location=LOCATION, identifier=TOKEN_ID, key=KEY, version=pymacaroons.MACAROON_V2
        )
        macaroon.caveats.append(pymacaroons.Caveat(caveat_id=data, version=pymacaroons.MACAROON_V2))
        outcome(raw_token(macaroon))


def _steer_tag(value: object) -> object:
    """Steer a share of generated arrays towards real tags, so field validation gets exercised."""
    return value % 5 if isinstance(value, int) and not isinstance(value, bool) else value


class TestPermissionsCaveat:
    """The gateway's own caveat: a string tag no Warehouse tag (a JSON integer) can ever equal; it only narrows."""

    def test_bytes_and_round_trip(self) -> None:
        caveat = Permissions(("read",))
        assert serialize(caveat) == b'["upload-gateway:permissions",["read"]]'
        assert deserialize(serialize(caveat), user_id=USER) == caveat

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b'["upload-gateway:permissions",["admin"]]', "invalid values for fields"),
            (b'["upload-gateway:permissions","read"]', "invalid values for fields"),
            (b'["upload-gateway:permissions",["read"],1]', "invalid values for fields"),
            (b'["upload-gateway:permissions"]', "Not enough values"),
            (b'["Upload-Gateway:Permissions",["read"]]', "caveat has unknown tag: Upload-Gateway:Permissions"),
            (b'["upload-gateway:other",["read"]]', "caveat has unknown tag: upload-gateway:other"),
        ],
    )
    def test_refused(self, data: bytes, message: str) -> None:
        with pytest.raises(InvalidTokenError) as excinfo:
            deserialize(data, user_id=USER)
        assert str(excinfo.value) == message

    def test_a_holder_makes_a_read_only_copy_with_plain_pymacaroons(self) -> None:
        token = make_token(RequestUser(USER))
        copy = attenuate(token, b'["upload-gateway:permissions",["read"]]')
        assert outcome(token, action="upload") is None and outcome(token, action="read") is None
        assert outcome(copy, action="read") is None
        assert outcome(copy, action="upload") == "token is not valid for upload: a caveat allows only read"

    def test_a_stored_permissions_caveat_binds_as_an_embedded_one(self) -> None:
        assert outcome(make_token(), action="read", stored=(Permissions(("upload",)),)) is not None

    def test_an_empty_list_allows_nothing(self) -> None:
        token = make_token(Permissions(()))
        assert outcome(token, action="read") == "token is not valid for read: a caveat allows only nothing"


class TestListing:
    """Reading the index root: project caveats narrow what is listed (the caller filters), not the request."""

    def test_project_caveats_pass_on_a_listing_only(self) -> None:
        token = make_token(ProjectName(("demo",)), ProjectID((PROJECT_ID,)))
        assert outcome(token, project=None, project_id=None, action="read", listing=True) is None
        assert outcome(token, project=None, project_id=None, action="read") == (
            "project-scoped token used outside of a project context"
        )

    def test_a_listing_still_checks_every_other_caveat(self) -> None:
        token = make_token(Expiration(expires_at=NOW, not_before=NOW - 10), ProjectName(("demo",)))
        assert outcome(token, project=None, project_id=None, action="read", listing=True) == "token is expired"


_NARROWING_POOL: list[bytes] = [
    *map(serialize, _POOL),
    *(serialize(Permissions(allowed)) for allowed in ((), ("read",), ("upload",), ("read", "upload"))),
    b'["upload-gateway:permissions",["admin"]]',
    b'[4,"x"]',
    b'[5,["read"]]',
    b'["read"]',
    b"{}",
    b"garbage",
    b"",
]
_CONTEXTS = [
    {"action": action, "project": project, "project_id": project_id, "listing": listing}
    for action in ("read", "upload")
    for project, project_id in (("demo", PROJECT_ID), ("other", None), (None, None))
    for listing in (False, True)
]


@settings(database=None, max_examples=300, deadline=None)
@given(
    embedded=st.lists(st.sampled_from(_POOL), max_size=2),
    added=st.lists(st.one_of(st.sampled_from(_NARROWING_POOL), st.binary(max_size=40)), min_size=1, max_size=3),
)
def test_a_caveat_only_narrows(embedded: list[Caveat], added: list[bytes]) -> None:
    """Whatever a holder adds, every context the attenuated token passes, the original token passed too."""
    token = make_token(*embedded)
    attenuated = attenuate(token, *(data for data in added if _is_utf8_bytes(data)))
    for ctx in _CONTEXTS:
        if outcome(attenuated, **ctx) is None:
            assert outcome(token, **ctx) is None, ctx


def _is_utf8_bytes(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True
