"""The email profile: one shape for the model, the API, the UI and the CLI (pure).

``ProfileSpec`` is what an administrator writes (secrets included, as input only);
``ProfileRead`` is what every surface shows (secrets replaced by ``password_set``).
Validation errors become :class:`postroom.errors.ValidationError` with dotted field
paths such as ``smtp.port`` via :func:`parse_spec`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from postroom.addresses import check_addr_spec, check_hostname, check_single_line
from postroom.errors import FieldError
from postroom.validation import validate_model

__all__ = [
    "MASKED_SECRET",
    "AuthMethod",
    "FieldWarning",
    "ImapSettings",
    "LastTest",
    "ProfileRead",
    "ProfileSpec",
    "Security",
    "SenderSettings",
    "SmtpSettings",
    "parse_spec",
    "warnings_for",
]

#: What a form or API client may send back for a secret it was never shown.
MASKED_SECRET = "********"


class Security(StrEnum):
    STARTTLS = "starttls"
    TLS = "tls"
    NONE = "none"


class AuthMethod(StrEnum):
    NONE = "none"
    BASIC = "basic"
    OAUTH2 = "oauth2"


Timeout = Annotated[float | None, Field(gt=0, le=3600)]
Port = Annotated[int, Field(ge=1, le=65535)]


def _single_line(value: str | None, *, max_len: int) -> str | None:
    if value is None:
        return None
    if len(value) > max_len:
        raise ValueError(f"must be at most {max_len} characters")
    reason = check_single_line(value)
    if reason:
        raise ValueError(reason)
    return value


def _host(value: str) -> str:
    value = value.strip()
    reason = check_hostname(value)
    if reason:
        raise ValueError(reason)
    return value


def _pem(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError(
            "is not PEM certificate text (-----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----)"
        ) from None
    if not certs:
        raise ValueError("holds no certificate")
    return value.strip() + "\n"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class _Server(_Strict):
    host: str = Field(max_length=253)
    port: Port
    security: Security
    verify_certificate: bool = True
    ca_bundle: str | None = Field(default=None, max_length=200_000)
    auth: AuthMethod
    username: str | None = Field(default=None, max_length=320)
    password: str | None = Field(default=None, max_length=4096)
    oauth2_config: str | None = Field(default=None, max_length=100)

    @field_validator("host")
    @classmethod
    def _host_check(cls, v: str) -> str:
        return _host(v)

    @field_validator("ca_bundle")
    @classmethod
    def _pem_check(cls, v: str | None) -> str | None:
        return _pem(v)

    @field_validator("username", "oauth2_config")
    @classmethod
    def _line(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            return None
        return _single_line(v, max_len=320)

    @field_validator("password")
    @classmethod
    def _no_nul(cls, v: str | None) -> str | None:
        if v is not None and ("\x00" in v or "\r" in v or "\n" in v):
            raise ValueError("must not contain CR, LF or NUL")
        return v

    @model_validator(mode="after")
    def _auth_needs(self) -> _Server:
        problem = _auth_problem(self.auth, self.username, self.oauth2_config)
        if problem:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        return self


def _blank(value: object) -> bool:
    return not (isinstance(value, str) and value.strip())


def _auth_problem(auth: object, username: object, oauth2_config: object) -> tuple[str, str] | None:
    """The field a sign-in method needs and lacks, as (field, message); on raw input too."""
    if auth == AuthMethod.BASIC and _blank(username):
        return "username", "is required when auth is 'basic'"
    if auth == AuthMethod.OAUTH2 and _blank(oauth2_config):
        return "oauth2_config", "is required when auth is 'oauth2'"
    return None


class SmtpSettings(_Server):
    port: Port = 587
    security: Security = Security.STARTTLS
    auth: AuthMethod = AuthMethod.NONE
    auth_domain: str | None = Field(default=None, max_length=253)
    connect_timeout_s: Timeout = 30.0
    send_timeout_s: Timeout = 60.0
    local_hostname: str | None = Field(default=None, max_length=253)

    @field_validator("auth_domain")
    @classmethod
    def _domain(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        if "\\" in v:
            raise ValueError("must be the domain alone; postroom sends DOMAIN\\user itself")
        return _single_line(v.strip(), max_len=253)

    @field_validator("local_hostname")
    @classmethod
    def _ehlo(cls, v: str | None) -> str | None:
        return None if v is None or not v.strip() else _host(v)


class ImapSettings(_Server):
    port: Port = 993
    security: Security = Security.TLS
    auth: AuthMethod = AuthMethod.BASIC
    folder: str = Field(default="INBOX", min_length=1, max_length=200)
    processed: str = Field(default="mark_seen", max_length=210)
    poll_interval_s: int = Field(default=60, ge=5, le=86_400)
    use_idle: bool = True
    connect_timeout_s: Timeout = 30.0

    @field_validator("folder")
    @classmethod
    def _folder(cls, v: str) -> str:
        return _single_line(v, max_len=200) or "INBOX"

    @field_validator("processed")
    @classmethod
    def _processed(cls, v: str) -> str:
        if v in ("mark_seen", "delete"):
            return v
        if v.startswith("move:") and v[5:].strip():
            _single_line(v, max_len=210)
            return v
        raise ValueError("must be 'mark_seen', 'move:<folder>' or 'delete'")


class SenderSettings(_Strict):
    from_address: str = Field(max_length=254)
    from_name: str | None = Field(default=None, max_length=200)
    reply_to: str | None = Field(default=None, max_length=254)

    @field_validator("from_address", "reply_to")
    @classmethod
    def _address(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None or not v.strip():
            if info.field_name == "from_address":
                raise ValueError("is required: the address mail is sent from")
            return None
        reason = check_addr_spec(v.strip())
        if reason:
            raise ValueError(reason)
        return v.strip()

    @field_validator("from_name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return None if v is None or not v.strip() else _single_line(v.strip(), max_len=200)


def _check_base_url(v: str | None) -> str | None:
    if v is None or not v.strip():
        return None
    v = v.strip()
    if check_single_line(v):
        raise ValueError("must be a single line")
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must start with https:// or http://")
    if not parts.hostname:
        raise ValueError("must name a host, e.g. https://automation.example.com")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("must not contain a user name or password")
    if parts.query or parts.fragment or "?" in v or "#" in v:
        raise ValueError("must not contain a query (?…) or fragment (#…)")
    try:
        parts.port  # noqa: B018 - raises ValueError for an out-of-range port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return v.rstrip("/")


class ProfileSpec(_Strict):
    """A complete profile as written by an administrator."""

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)
    enabled: bool = True
    smtp: SmtpSettings
    sender: SenderSettings
    imap: ImapSettings | None = None
    email_actions_base_url: str | None = Field(default=None, max_length=2000)
    rate_limit_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)
    max_connections: int = Field(default=4, ge=1, le=100)

    @classmethod
    def raw_problems(cls, data: Any) -> list[FieldError]:
        """Cross-field rules checked on raw input, for validate_model to report with the
        field errors (pydantic would run them only once every field is valid)."""
        out: list[FieldError] = []
        if not isinstance(data, dict):
            return out
        for side in ("smtp", "imap"):
            server = data.get(side)
            if isinstance(server, dict):
                problem = _auth_problem(
                    server.get("auth"), server.get("username"), server.get("oauth2_config")
                )
                if problem:
                    out.append(FieldError(f"{side}.{problem[0]}", problem[1]))
        return out

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must not be empty")
        return _single_line(v, max_len=100) or v

    @field_validator("description")
    @classmethod
    def _desc(cls, v: str) -> str:
        if "\x00" in v:
            raise ValueError("must not contain NUL")
        return v

    @field_validator("email_actions_base_url")
    @classmethod
    def _base_url(cls, v: str | None) -> str | None:
        return _check_base_url(v)


class LastTest(BaseModel):
    at: datetime
    ok: bool
    kind: str = "smtp"
    error_code: str | None = None
    #: the settings this test ran on have changed since (host, port, login, password, …):
    #: the result no longer describes the profile
    stale: bool = False


class FieldWarning(BaseModel):
    field: str
    message: str


#: said when a created profile became the system default (no default existed)
NOW_DEFAULT = (
    "It is now the system default: postroom's own mail (password resets) and processes "
    "without a binding are sent through it."
)
#: said while no system default exists
NO_DEFAULT = (
    "No system default profile: postroom's own mail (password resets) and processes "
    "without a binding have nowhere to go. Set one with 'Set as default' "
    "(`postroom profile set-default NAME`)."
)


class ProfileUsage(BaseModel):
    """Messages this profile delivered (``sent``) or gave up on (``failed``: failed or
    bounced), among those queued in the last 7 and 30 days still in the outbox."""

    sent_7d: int = 0
    failed_7d: int = 0
    sent_30d: int = 0
    failed_30d: int = 0


class ProfileRead(BaseModel):
    """A profile as every surface shows it: no secret, only whether one is set."""

    id: int
    name: str
    description: str
    enabled: bool
    smtp: dict[str, Any]
    sender: SenderSettings
    imap: dict[str, Any] | None
    email_actions_base_url: str | None
    rate_limit_per_minute: int | None
    max_connections: int
    version: int
    is_default: bool = False
    created_at: datetime
    updated_at: datetime
    last_test: LastTest | None = None
    last_used_at: datetime | None = None
    secret_rotated_at: datetime | None = None
    usage: ProfileUsage = ProfileUsage()
    #: why the profile looks obsolete (not default, bound to nothing, unused for N days)
    unused: str | None = None
    warnings: list[FieldWarning] = []


def parse_spec(data: dict[str, Any]) -> ProfileSpec:
    """Validate ``data`` into a ProfileSpec; raises ValidationError listing every bad field."""
    return validate_model(ProfileSpec, data)


#: consumer mail domains: an address there is a person's mailbox, not a service's
CONSUMER_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "hotmail.co.uk",
        "live.com", "msn.com", "yahoo.com", "yahoo.co.uk", "ymail.com", "icloud.com",
        "me.com", "mac.com", "aol.com", "gmx.com", "gmx.de", "gmx.net", "web.de",
        "mail.com", "yandex.ru", "yandex.com", "proton.me", "protonmail.com", "zoho.com",
    }
)  # fmt: skip
#: these providers rewrite or refuse a From that is not the signed-in account
SAME_FROM_DOMAINS = frozenset(
    {"gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
     "yahoo.com", "ymail.com", "icloud.com", "me.com", "mac.com", "aol.com"}
)  # fmt: skip


def _domain(address: str | None) -> str:
    return address.rpartition("@")[2].strip().casefold() if address and "@" in address else ""


def _mailbox_warnings(spec: ProfileSpec) -> list[FieldWarning]:
    """A dedicated service mailbox, not a person's: warn about consumer accounts, and about
    a From the provider will not accept from that account."""
    out: list[FieldWarning] = []
    username = spec.smtp.username if spec.smtp.auth is AuthMethod.BASIC else None
    sender = spec.sender.from_address
    for field, address in (("smtp.username", username), ("sender.from_address", sender)):
        domain = _domain(address)
        if domain in CONSUMER_DOMAINS:
            out.append(
                FieldWarning(
                    field=field,
                    message=f"'{address}' is a personal account at {domain}: use a dedicated "
                    "service mailbox, so mail does not stop when the person leaves or changes "
                    "the password, and their mailbox does not fill with bounces.",
                )
            )
            break
    if (
        username
        and "@" in username
        and _domain(username) in SAME_FROM_DOMAINS
        and username.casefold() != sender.casefold()
    ):
        out.append(
            FieldWarning(
                field="sender.from_address",
                message=f"{_domain(username)} sends only as the signed-in account: the From "
                f"'{sender}' differs from the username '{username}', so the provider will "
                "replace or refuse it. Use the same address, or a verified alias.",
            )
        )
    return out


def warnings_for(spec: ProfileSpec) -> list[FieldWarning]:
    """Legal but suspicious combinations, saved as given and shown to the administrator."""
    out: list[FieldWarning] = _mailbox_warnings(spec)
    smtp = spec.smtp
    if smtp.security is Security.STARTTLS and smtp.port == 465:
        out.append(
            FieldWarning(
                field="smtp.security",
                message="Port 465 expects TLS from the first byte; you probably want "
                "security 'tls'.",
            )
        )
    if smtp.security is Security.TLS and smtp.port in (25, 587):
        out.append(
            FieldWarning(
                field="smtp.security",
                message=f"Port {smtp.port} usually speaks plaintext first and upgrades with "
                "STARTTLS; you probably want security 'starttls'.",
            )
        )
    for side, server in (("smtp", smtp), ("imap", spec.imap)):
        if server is None:
            continue
        if server.security is Security.NONE and server.auth is not AuthMethod.NONE:
            out.append(
                FieldWarning(
                    field=f"{side}.security",
                    message="Credentials would travel unencrypted; use 'starttls' or 'tls'.",
                )
            )
        if not server.verify_certificate:
            out.append(
                FieldWarning(
                    field=f"{side}.verify_certificate",
                    message="The server's certificate is not checked, so anyone on the path "
                    "can read the mail and the password; prefer a CA bundle (ca_bundle).",
                )
            )
    if spec.imap is not None and spec.imap.security is Security.TLS and spec.imap.port == 143:
        out.append(
            FieldWarning(
                field="imap.security",
                message="Port 143 usually uses STARTTLS; you probably want 'starttls'.",
            )
        )
    if spec.imap is not None and spec.imap.security is Security.STARTTLS and spec.imap.port == 993:
        out.append(
            FieldWarning(
                field="imap.security",
                message="Port 993 expects TLS from the first byte; you probably want 'tls'.",
            )
        )
    return out
