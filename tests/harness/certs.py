"""Throw-away TLS material for the test mail servers.

Generated once per test run into a directory of the caller's choice:

* a private test CA (``ca_pem``);
* ``valid``: a CA-signed server certificate for ``localhost`` and ``127.0.0.1``;
* ``self_signed``: a certificate for ``localhost`` that signs itself (not issued by the CA);
* ``expired``: a CA-signed certificate for ``localhost``/``127.0.0.1`` that expired long ago;
* ``wrong_host``: a CA-signed, current certificate for ``mail.example.net`` only.

Clients trust the CA with :meth:`HarnessCerts.client_context` (``ssl.create_default_context``
plus the CA), so verification fails on the bad certificates with the usual ``ssl`` errors:
``verify_code`` 18 (self-signed), 10 (expired) and 62 (hostname mismatch).
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVER_IDENTITIES = ("localhost", "127.0.0.1")
WRONG_HOST = "mail.example.net"


@dataclass(frozen=True)
class CertFiles:
    """PEM paths of one server certificate: ``cert`` holds the leaf (then any chain)."""

    cert: str
    key: str


@dataclass(frozen=True)
class HarnessCerts:
    """Paths of every PEM file the harness generated."""

    directory: str
    ca_pem: str
    valid: CertFiles
    self_signed: CertFiles
    expired: CertFiles
    wrong_host: CertFiles

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts the test CA (and only the test CA)."""
        return ssl.create_default_context(cafile=self.ca_pem)


def _write(path: Path, data: bytes, mode: int) -> str:
    # Keys are read by the daemons while they are still root, so 0600 is enough.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)
    return str(path)


def _save_leaf(directory: Path, name: str, leaf: trustme.LeafCert) -> CertFiles:
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return CertFiles(
        cert=_write(directory / f"{name}.crt.pem", chain, 0o644),
        key=_write(directory / f"{name}.key.pem", leaf.private_key_pem.bytes(), 0o600),
    )


def _self_signed(directory: Path, name: str) -> CertFiles:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "postroom self-signed test"),
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return CertFiles(
        cert=_write(
            directory / f"{name}.crt.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644
        ),
        key=_write(directory / f"{name}.key.pem", key_pem, 0o600),
    )


def generate_certs(directory: str | os.PathLike[str]) -> HarnessCerts:
    """Create the CA and the four server certificates in ``directory`` (created if needed)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o755)
    ca = trustme.CA(organization_name="postroom test CA")
    ca_pem = _write(out / "ca.crt.pem", ca.cert_pem.bytes(), 0o644)
    now = dt.datetime.now(dt.UTC)
    valid = ca.issue_cert(
        *SERVER_IDENTITIES,
        common_name="localhost",
        not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=30),
    )
    expired = ca.issue_cert(
        *SERVER_IDENTITIES,
        common_name="localhost",
        not_before=now - dt.timedelta(days=60),
        not_after=now - dt.timedelta(days=30),
    )
    wrong_host = ca.issue_cert(
        WRONG_HOST,
        common_name=WRONG_HOST,
        not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=30),
    )
    return HarnessCerts(
        directory=str(out),
        ca_pem=ca_pem,
        valid=_save_leaf(out, "valid", valid),
        self_signed=_self_signed(out, "self-signed"),
        expired=_save_leaf(out, "expired", expired),
        wrong_host=_save_leaf(out, "wrong-host", wrong_host),
    )
