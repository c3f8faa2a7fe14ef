"""TLS contexts for mail servers, and TLS failures classified into diagnosis codes."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["TlsFailure", "classify_tls_error", "describe_tls", "make_context"]

# OpenSSL X509_V_ERR_* codes we explain to people.
_EXPIRED = {9, 10}  # not yet valid, has expired
_UNTRUSTED = {2, 18, 19, 20, 21, 27, 28, 32}
_HOST_MISMATCH = {62, 64}
_WRONG_MODE_REASONS = (
    "WRONG_VERSION_NUMBER",
    "HTTP_REQUEST",
    "HTTPS_PROXY_REQUEST",
    "PACKET_LENGTH_TOO_LONG",
    "RECORD_LAYER_FAILURE",
    "UNKNOWN_PROTOCOL",
)


def make_context(*, verify: bool, ca_bundle: str | None) -> ssl.SSLContext:
    """A client context: system CAs plus ``ca_bundle`` (PEM text); TLS 1.2 or newer."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_bundle:
        ctx.load_verify_locations(cadata=ca_bundle)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass(frozen=True)
class TlsFailure:
    code: str
    detail: str


def classify_tls_error(exc: BaseException) -> TlsFailure:
    """Map an ``ssl`` error to a diagnosis code and a one-line detail."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        vcode = exc.verify_code
        message = exc.verify_message or str(exc)
        if vcode in _EXPIRED:
            return TlsFailure("tls_certificate_expired", f"certificate verify failed: {message}")
        if vcode in _HOST_MISMATCH:
            return TlsFailure("tls_hostname_mismatch", f"certificate verify failed: {message}")
        if vcode in _UNTRUSTED:
            return TlsFailure("tls_certificate_untrusted", f"certificate verify failed: {message}")
        return TlsFailure("tls_handshake_failed", f"certificate verify failed: {message}")
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").upper()
        text = exc.reason or str(exc)
        if any(r in reason for r in _WRONG_MODE_REASONS):
            return TlsFailure("tls_wrong_mode", f"the server did not answer with TLS ({text})")
        return TlsFailure("tls_handshake_failed", f"TLS handshake failed ({text})")
    return TlsFailure("tls_handshake_failed", f"TLS handshake failed ({type(exc).__name__}: {exc})")


def describe_tls(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """'TLSv1.3, TLS_AES_256_GCM_SHA384; certificate for mail.example.com, expires 2027-01-01'."""
    if ssl_object is None:
        return ""
    parts = [f"{ssl_object.version()}, {(ssl_object.cipher() or ('?',))[0]}"]
    cert = ssl_object.getpeercert()
    if cert:
        subject = dict(x[0] for x in cert.get("subject", ()))  # type: ignore[misc]
        cn = subject.get("commonName", "?")
        expires = cert.get("notAfter")
        when = ""
        if isinstance(expires, str):
            ts = ssl.cert_time_to_seconds(expires)
            when = f", expires {datetime.fromtimestamp(ts, UTC):%Y-%m-%d}"
        parts.append(f"certificate for {cn}{when}")
    else:
        parts.append("certificate not verified")
    return "; ".join(parts)
