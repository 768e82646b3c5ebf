from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.crypto import keyed_hash, load_or_create_secret, seal, server_secret, subkey, unseal

KEY = bytes(range(32))
CONTEXT = b"user:1b4e28ba-2fa1-11d2-883f-0016d3cca427"


class TestSecretFile:
    def test_created_once_then_reused(self, tmp_path: Path) -> None:
        path = tmp_path / "data" / "nested" / "secret.key"
        secret = load_or_create_secret(path)
        assert len(secret) == 32
        assert path.read_bytes() == secret
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert load_or_create_secret(path) == secret
        assert os.listdir(path.parent) == ["secret.key"]  # no temporary file left behind

    def test_existing_longer_secret_is_used_as_is(self, tmp_path: Path) -> None:
        path = tmp_path / "secret.key"
        path.write_bytes(b"x" * 64)
        assert load_or_create_secret(path) == b"x" * 64

    @pytest.mark.parametrize("content", [b"", b"x" * 31])
    def test_too_short(self, tmp_path: Path, content: bytes) -> None:
        path = tmp_path / "secret.key"
        path.write_bytes(content)
        with pytest.raises(ValueError, match="at least 32") as excinfo:
            load_or_create_secret(path)
        assert "\n" not in str(excinfo.value)
        assert path.read_bytes() == content  # never replaced: tokens and sealed seeds depend on it

    def test_a_concurrent_creator_wins(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        path = tmp_path / "secret.key"
        theirs = b"t" * 32
        real_link = os.link

        def link_after_another_process(src: str, dst: Path) -> None:
            path.write_bytes(theirs)
            real_link(src, dst)

        monkeypatch.setattr(os, "link", link_after_another_process)
        assert load_or_create_secret(path) == theirs
        assert os.listdir(tmp_path) == ["secret.key"]

    def test_loading_the_configuration_writes_no_file(self, tmp_path: Path) -> None:
        config = load_config(None, {}, cwd=tmp_path)
        assert list(tmp_path.iterdir()) == []
        secret = server_secret(config)
        assert config.tokens.secret_file.read_bytes() == secret

    def test_a_bad_file_is_one_line_naming_the_key(self, tmp_path: Path) -> None:
        (tmp_path / "secret.key").write_bytes(b"short")
        config = load_config(None, {"GATEWAY_TOKENS_SECRET_FILE": "secret.key"}, cwd=tmp_path)
        with pytest.raises(ConfigError, match=r"^tokens\.secret_file: secret file .* holds 5 bytes"):
            server_secret(config)


def test_subkeys_are_separated_by_purpose_and_secret() -> None:
    keys = {subkey(KEY, "token-root"), subkey(KEY, "totp-seal"), subkey(KEY[::-1], "token-root"), KEY}
    assert len(keys) == 4
    assert subkey(KEY, "session") == subkey(KEY, "session")
    assert len(subkey(KEY, "session")) == 32


class TestSeal:
    @pytest.mark.parametrize("plaintext", [b"", b"JBSWY3DPEHPK3PXP", bytes(1000)])
    def test_round_trip(self, plaintext: bytes) -> None:
        assert unseal(KEY, seal(KEY, plaintext, context=CONTEXT), context=CONTEXT) == plaintext

    def test_fresh_nonce_each_time(self) -> None:
        assert seal(KEY, b"seed", context=CONTEXT) != seal(KEY, b"seed", context=CONTEXT)

    def test_every_tampered_byte_is_detected(self) -> None:
        blob = seal(KEY, b"seed", context=CONTEXT)
        for index in range(len(blob)):
            tampered = blob[:index] + bytes([blob[index] ^ 1]) + blob[index + 1 :]
            with pytest.raises(ValueError, match="does not authenticate"):
                unseal(KEY, tampered, context=CONTEXT)

    @pytest.mark.parametrize(
        ("key", "context"),
        [(KEY, b"user:someone-else"), (KEY, b""), (KEY[::-1], CONTEXT)],
    )
    def test_other_key_or_context(self, key: bytes, context: bytes) -> None:
        with pytest.raises(ValueError, match="does not authenticate"):
            unseal(key, seal(KEY, b"seed", context=CONTEXT), context=context)

    @pytest.mark.parametrize("length", [0, 12, 27])
    def test_truncated(self, length: int) -> None:
        with pytest.raises(ValueError, match="truncated"):
            unseal(KEY, seal(KEY, b"", context=CONTEXT)[:length], context=CONTEXT)


def test_keyed_hash() -> None:
    expected = hmac.new(KEY, b"abcdef0123456789", hashlib.sha256).hexdigest()
    assert keyed_hash(KEY, "abcdef0123456789") == expected
    assert keyed_hash(KEY[::-1], "abcdef0123456789") != expected
