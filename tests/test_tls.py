"""`gateway.tls.server_context`: a certificate and key that serve https, and every fault of the files as the one
line that names its key (the real handshakes, over a socket pair, with clients that trust the test CA alone)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import threading
import warnings
from pathlib import Path

import pytest

from gateway.config import ConfigError, TLSFiles
from gateway.tls import server_context
from tests.harness.tls import PKI


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str = "localhost") -> str:
    """A TLS handshake between the two contexts over a socket pair; the version agreed (or the client's error)."""
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(10)
        right.settimeout(10)
        failures: list[BaseException] = []

        def serve() -> None:
            try:
                with server.wrap_socket(right, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError) as exc:
                failures.append(exc)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with client.wrap_socket(left, server_hostname=host) as tls:
                version = tls.version() or ""
                assert tls.selected_alpn_protocol() in (None, "http/1.1")
                tls.sendall(b"x")
                return version
        finally:
            thread.join()


def refusal(files: TLSFiles) -> str:
    with pytest.raises(ConfigError) as exc:
        server_context(files)
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_the_certificate_and_key_serve_https_to_a_client_of_the_ca(pki: PKI) -> None:
    context = server_context(TLSFiles(pki.cert, pki.key))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE  # clients bring tokens, not certificates
    assert handshake(context, pki.client_context()) == "TLSv1.3"
    assert handshake(context, pki.client_context(), host="127.0.0.1") == "TLSv1.3"


def test_tls_1_1_is_refused(pki: PKI) -> None:
    """A client that offers at most TLS 1.1 (allowed on its side: security level 0) gets no session."""
    old = pki.client_context()
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # Python deprecates the version too: this client is what is refused
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        handshake(server_context(TLSFiles(pki.cert, pki.key)), old)
    tls12 = pki.client_context()
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert handshake(server_context(TLSFiles(pki.cert, pki.key)), tls12) == "TLSv1.2"


def test_a_key_others_may_read_is_refused_a_group_readable_one_taken(pki: PKI, tmp_path: Path) -> None:
    key = tmp_path / "server.key"
    shutil.copyfile(pki.key, key)
    for mode in (0o644, 0o604, 0o602):
        os.chmod(key, mode)
        message = refusal(TLSFiles(pki.cert, key))
        assert message.startswith("server.tls_key: ") and f"mode {mode:o}" in message and "chmod o-rwx" in message
    os.chmod(key, 0o640)  # a group such as ssl-cert, granted on purpose
    server_context(TLSFiles(pki.cert, key))
    assert os.stat(key).st_mode & 0o777 == 0o640  # the operator's file: its mode is never changed


def test_a_key_that_is_not_the_certificates_is_refused(pki: PKI) -> None:
    _, other_key = pki.issue("other")
    message = refusal(TLSFiles(pki.cert, other_key))
    assert message.startswith("server.tls_key: ") and "is not the private key of the certificate" in message


def test_a_key_under_a_passphrase_is_refused_never_prompted_for(pki: PKI) -> None:
    cert, key = pki.issue("locked", passphrase=b"correct horse")
    message = refusal(TLSFiles(cert, key))
    assert message.startswith("server.tls_key: ") and "passphrase" in message


def test_an_expired_certificate_is_refused(pki: PKI) -> None:
    cert, key = pki.issue("expired", expired=True)
    message = refusal(TLSFiles(cert, key))
    assert message.startswith("server.tls_cert: ") and "expired on" in message


def test_files_that_are_missing_unreadable_or_not_pem_name_their_key(pki: PKI, tmp_path: Path) -> None:
    assert refusal(TLSFiles(tmp_path / "missing.pem", pki.key)).startswith("server.tls_cert: cannot read")
    assert refusal(TLSFiles(pki.cert, tmp_path / "missing.key")).startswith("server.tls_key: cannot read")
    assert refusal(TLSFiles(pki.cert, tmp_path)).startswith("server.tls_key: cannot read")  # a directory
    garbage = tmp_path / "garbage"
    garbage.write_text("not a certificate\n")
    os.chmod(garbage, 0o600)
    assert "holds no PEM certificate" in refusal(TLSFiles(garbage, pki.key))
    assert "holds no PEM private key" in refusal(TLSFiles(pki.cert, garbage))
    # The certificate where the key should be, and the key where the certificate should be.
    assert "holds no PEM private key" in refusal(TLSFiles(pki.cert, _private_copy(pki.cert, tmp_path)))
    assert "holds no PEM certificate" in refusal(TLSFiles(pki.key, pki.key))


def _private_copy(path: Path, directory: Path) -> Path:
    copy = directory / f"{path.name}.private"
    shutil.copyfile(path, copy)
    os.chmod(copy, 0o600)
    return copy


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_key_the_gateways_user_cannot_read_names_its_key(pki: PKI, tmp_path: Path) -> None:
    key = tmp_path / "server.key"
    shutil.copyfile(pki.key, key)
    os.chmod(key, 0)
    assert refusal(TLSFiles(pki.cert, key)).startswith("server.tls_key: cannot read")
