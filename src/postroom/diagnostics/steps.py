"""The connection test's result: ordered steps, and one error with a code and a hint (pure).

Codes are stable: scripts match on them. Extend the list, never rename a code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

__all__ = ["Code", "Diagnosis", "DiagnosisError", "Step", "hint_for"]


class Code(StrEnum):
    DNS_NOT_FOUND = "dns_not_found"
    CONNECT_REFUSED = "connect_refused"
    CONNECT_TIMEOUT = "connect_timeout"
    NETWORK_UNREACHABLE = "network_unreachable"
    BLOCKED_BY_POLICY = "blocked_by_policy"
    GREETING_TIMEOUT = "greeting_timeout"
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed"
    TLS_CERTIFICATE_UNTRUSTED = "tls_certificate_untrusted"
    TLS_HOSTNAME_MISMATCH = "tls_hostname_mismatch"
    TLS_CERTIFICATE_EXPIRED = "tls_certificate_expired"
    TLS_WRONG_MODE = "tls_wrong_mode"
    STARTTLS_NOT_OFFERED = "starttls_not_offered"
    AUTH_NOT_OFFERED = "auth_not_offered"
    AUTH_MECHANISM_UNSUPPORTED = "auth_mechanism_unsupported"
    AUTH_FAILED = "auth_failed"
    OAUTH2_TOKEN_FAILED = "oauth2_token_failed"
    SENDER_REJECTED = "sender_rejected"
    RECIPIENT_REJECTED = "recipient_rejected"
    MESSAGE_REJECTED = "message_rejected"
    SEND_TIMEOUT = "send_timeout"
    PROTOCOL_ERROR = "protocol_error"
    IMAP_FOLDER_MISSING = "imap_folder_missing"
    ROUNDTRIP_TIMEOUT = "roundtrip_timeout"
    TEST_TIMEOUT = "test_timeout"
    SECRET_UNAVAILABLE = "secret_unavailable"
    PROXY_REFUSED = "proxy_refused"
    PROXY_AUTH_FAILED = "proxy_auth_failed"
    PROXY_TIMEOUT = "proxy_timeout"


class Step(BaseModel):
    name: str
    ok: bool
    ms: float
    detail: str = ""


class DiagnosisError(BaseModel):
    code: Code
    message: str
    hint: str


class Diagnosis(BaseModel):
    """What a connection test found. ``ok`` is true only when every step passed."""

    kind: str
    ok: bool
    steps: list[Step] = Field(default_factory=list)
    error: DiagnosisError | None = None
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    total_ms: float = 0.0

    @property
    def failed_step(self) -> Step | None:
        return next((s for s in self.steps if not s.ok), None)


_GMAIL = ("gmail.com", "googlemail.com", "google.com")
_MICROSOFT = ("office365.com", "outlook.com", "hotmail.com", "live.com", "microsoft.com")


def _provider(host: str) -> str | None:
    h = host.lower().rstrip(".")
    if any(h == d or h.endswith("." + d) for d in _GMAIL):
        return "google"
    if any(h == d or h.endswith("." + d) for d in _MICROSOFT):
        return "microsoft"
    return None


def hint_for(
    code: Code,
    *,
    protocol: str = "smtp",
    host: str = "",
    port: int = 0,
    security: str = "",
    cause: str = "",
) -> str:
    """What a person should change, for ``code`` in this context.

    ``cause`` refines a few codes: ``needs_login`` (a recipient refused because the client
    did not sign in: relaying denied, client host rejected).
    """
    other_tls = "starttls" if security == "tls" else "tls"
    match code:
        case Code.DNS_NOT_FOUND:
            return f"Check the spelling of the host name '{host}', or use the server's IP address."
        case Code.CONNECT_REFUSED:
            return (
                f"Nothing accepts connections on port {port} of {host}. Check the port "
                f"(SMTP: 587 with STARTTLS, 465 with TLS, 25; IMAP: 993 with TLS, 143 with "
                "STARTTLS) and that the mail server is running."
            )
        case Code.CONNECT_TIMEOUT:
            return (
                "The server did not answer in time. A firewall may be dropping the connection: "
                f"check that outgoing connections to port {port} are allowed, or raise the "
                "connect timeout."
            )
        case Code.NETWORK_UNREACHABLE:
            return "This machine has no route to that address: check its network and proxy setup."
        case Code.PROXY_REFUSED:
            return (
                "The proxy (POSTROOM_PROXY) could not be reached, or it refused to connect to "
                f"{host} port {port}: check the proxy's address and that its rules allow this "
                "server and port."
            )
        case Code.PROXY_AUTH_FAILED:
            return (
                "The proxy refused to let postroom through: check the user name in "
                "POSTROOM_PROXY and the password in POSTROOM_PROXY_PASSWORD."
            )
        case Code.PROXY_TIMEOUT:
            return (
                "The proxy did not answer in time, or took too long to reach the server: check "
                "that the proxy is running, or raise the connect timeout."
            )
        case Code.BLOCKED_BY_POLICY:
            return (
                "Postroom's network policy blocks this address or port. An operator can allow "
                "it with POSTROOM_NET_ALLOW or POSTROOM_NET_PORTS."
            )
        case Code.GREETING_TIMEOUT:
            return (
                "The connection opened, but the server said nothing. If it expects TLS from the "
                "first byte, set security to 'tls'; otherwise check that this port belongs to a "
                "mail server."
            )
        case Code.TLS_WRONG_MODE:
            if security == "tls":
                return (
                    f"Port {port} speaks plaintext first and upgrades with STARTTLS; set "
                    "security to 'starttls'."
                )
            return f"Port {port} expects TLS from the first byte; set security to 'tls'."
        case Code.TLS_HANDSHAKE_FAILED:
            return (
                "The TLS handshake failed. Make sure the ports the server needs are open in the "
                "firewall (for offline installations, port 80 as well, for certificate "
                f"revocation checks), and that the server supports TLS 1.2 or newer. Try "
                f"security '{other_tls}' if the port expects it."
            )
        case Code.TLS_CERTIFICATE_UNTRUSTED:
            return (
                "The server's certificate is not signed by a trusted authority. If your "
                "organisation runs its own CA, give postroom its certificate: 'CA bundle' in the "
                "form, ca_bundle in REST or files, --ca-bundle FILE / --imap-ca-bundle FILE on "
                "the CLI; turning verification off is the last resort."
            )
        case Code.TLS_HOSTNAME_MISMATCH:
            return (
                f"The certificate is not valid for '{host}'. Use the host name the certificate "
                "names (see the detail), not an IP address or alias."
            )
        case Code.TLS_CERTIFICATE_EXPIRED:
            return "The server's certificate has expired (or the clock is wrong): ask its admin to renew it."
        case Code.STARTTLS_NOT_OFFERED:
            return (
                "The server does not offer STARTTLS on this port, and postroom never falls back "
                "to plaintext. Use port 465 with security 'tls', or ask the admin to enable "
                "STARTTLS; 'none' only on a trusted network."
            )
        case Code.AUTH_NOT_OFFERED:
            return (
                "The server offers no login on this connection. Some servers allow login only "
                "over TLS or on the submission port (587/465); or set auth to 'none' if the "
                "server relays without a login."
            )
        case Code.AUTH_MECHANISM_UNSUPPORTED:
            return "The server offers no login mechanism postroom can use with these credentials (PLAIN, LOGIN, CRAM-MD5, XOAUTH2)."
        case Code.AUTH_FAILED:
            provider = _provider(host)
            if provider == "google":
                return (
                    "Gmail refused the login. With 2-Step Verification on, create an app password "
                    "(Google Account → Security → App passwords) and use it here, or switch auth to "
                    "OAuth2. The username is the full address."
                )
            if provider == "microsoft":
                return (
                    "Microsoft 365 refused the login. Basic SMTP AUTH is off by default for most "
                    "tenants (error 5.7.30/5.7.139): switch auth to OAuth2, or have an admin enable "
                    "authenticated SMTP for this mailbox. The username is the full address."
                )
            return (
                "The server refused the username or password. Check both (the username is often "
                "the full address), and the auth domain if the server expects DOMAIN\\user."
            )
        case Code.OAUTH2_TOKEN_FAILED:
            return (
                "Postroom could not get an access token. If consent was revoked or expired, "
                "reconnect the OAuth2 configuration."
            )
        case Code.SENDER_REJECTED:
            return (
                "The server refused the From address. Many servers only accept the address of the "
                "signed-in account (or its aliases): set the sender's From address to it."
            )
        case Code.RECIPIENT_REJECTED if cause == "needs_login":
            return (
                "The server refused to take this mail from a client that did not sign in "
                "(relaying denied, or this client is not trusted). Set auth to 'basic' with the "
                "mailbox's username and password (or OAuth2), usually on the submission port "
                "587 or 465."
            )
        case Code.RECIPIENT_REJECTED:
            return "The server refused the recipient. Check the address, or whether the server relays to outside domains for this account."
        case Code.MESSAGE_REJECTED:
            return "The server refused the message itself (see its reply): size limits, content filters or sending quotas."
        case Code.SEND_TIMEOUT:
            return "The server stopped answering while mail was being sent. Raise the send timeout, or check the server's load and filters."
        case Code.PROTOCOL_ERROR:
            expected = "an SMTP" if protocol == "smtp" else "an IMAP"
            return (
                f"The server at port {port} did not speak like {expected} server (see the detail): "
                "check the host and port."
            )
        case Code.IMAP_FOLDER_MISSING:
            return "That folder does not exist in this mailbox. Check its name (case matters on some servers), or create it."
        case Code.ROUNDTRIP_TIMEOUT:
            return (
                "The test message was sent but did not arrive in the IMAP folder in time. Check "
                "spam filtering, that IMAP reads the mailbox the sender's address delivers to, "
                "and server-side rules that move mail."
            )
        case Code.TEST_TIMEOUT:
            return "The whole test took longer than its limit; the step that was running is marked failed."
        case Code.SECRET_UNAVAILABLE:
            return (
                "The password is a reference (env:/file:) that cannot be resolved on this machine."
            )
    return ""
