"""A test certificate authority and the certificates it issues, made with `cryptography`: the gateway's https in
the tests (`server.tls_cert` / `server.tls_key`), trusted by the clients through the CA's file alone.

`pki` (session-wide) writes the CA and a server certificate for 127.0.0.1, ::1 and localhost to a temporary
directory, the key mode 0600 as `serve` requires; `PKI.issue` makes others (expired, for other names, with
another key). ECDSA P-256 keys: quick to make, and taken by every client the tests run (OpenSSL, rustls).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOSTS = ("127.0.0.1", "::1", "localhost")
_DAY = datetime.timedelta(days=1)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def write_key(path: Path, pem: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(pem)
    os.chmod(path, mode)
    return path


@dataclass(frozen=True)
class PKI:
    """The CA (`ca`: its certificate, what clients are told to trust) and the server's `cert` (chain) and `key`."""

    directory: Path
    ca: Path
    cert: Path
    key: Path
    ca_key: ec.EllipticCurvePrivateKey

    def server(self) -> dict[str, object]:
        """The [server] keys that serve https with the server certificate."""
        return {"tls_cert": str(self.cert), "tls_key": str(self.key)}

    def client_context(self) -> ssl.SSLContext:
        """What a client that trusts only this CA connects with (hostname checked)."""
        return ssl.create_default_context(cafile=str(self.ca))

    def issue(
        self,
        name: str,
        *,
        hosts: tuple[str, ...] = HOSTS,
        expired: bool = False,
        passphrase: bytes | None = None,
    ) -> tuple[Path, Path]:
        """Another server certificate and its key, written as `<name>.pem` and `<name>.key` (mode 0600)."""
        cert, key = _issue(self.ca_key, hosts, expired=expired)
        cert_path = self.directory / f"{name}.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, write_key(self.directory / f"{name}.key", _key_pem(key, passphrase))


def _ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("upload-gateway test CA"))
        .issuer_name(_name("upload-gateway test CA"))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 30 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(
    ca_key: ec.EllipticCurvePrivateKey, hosts: tuple[str, ...], *, expired: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(_name("upload-gateway test CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - 3 * _DAY)
        .not_valid_after(now - _DAY if expired else now + 30 * _DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_pki(directory: Path) -> PKI:
    """A fresh CA and a server certificate for `HOSTS`, written to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _ca()
    ca = directory / "ca.pem"
    ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert, key = _issue(ca_key, HOSTS, expired=False)
    chain = directory / "server.pem"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return PKI(directory, ca, chain, write_key(directory / "server.key", _key_pem(key)), ca_key)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PKI]:
    """The test CA and the server certificate, once per test process."""
    yield make_pki(tmp_path_factory.mktemp("pki"))
