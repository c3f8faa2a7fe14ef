"""OAuth2 configuration records (pure): which provider, which app, which mailbox."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from postroom.addresses import check_single_line

__all__ = [
    "Grant",
    "OAuth2ConfigRead",
    "OAuth2ConfigSpec",
    "OAuth2LastError",
    "OAuth2Status",
    "Provider",
]


class Provider(StrEnum):
    GOOGLE = "google"
    MICROSOFT = "microsoft"
    GENERIC = "generic"


class Grant(StrEnum):
    AUTHORIZATION_CODE = "authorization_code"
    DEVICE_CODE = "device_code"
    CLIENT_CREDENTIALS = "client_credentials"


def _url(v: str | None) -> str | None:
    if v is None or not v.strip():
        return None
    v = v.strip()
    parts = urlsplit(v)
    if check_single_line(v) or parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be an https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not contain a user name or password")
    return v


class OAuth2ConfigSpec(BaseModel):
    """An OAuth2 configuration as an administrator writes it (client secret as input only)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    provider: Provider = Provider.GENERIC
    grant: Grant = Grant.AUTHORIZATION_CODE
    client_id: str = Field(min_length=1, max_length=500)
    client_secret: str | None = Field(default=None, max_length=4096)
    tenant: str | None = Field(default=None, max_length=200)
    authorize_url: str | None = Field(default=None, max_length=2000)
    token_url: str | None = Field(default=None, max_length=2000)
    device_authorization_url: str | None = Field(default=None, max_length=2000)
    scopes: list[str] = Field(default_factory=list, max_length=50)
    username: str | None = Field(default=None, max_length=320)

    @field_validator("name", "client_id", "tenant", "username")
    @classmethod
    def _line(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip()
        reason = check_single_line(v)
        if reason:
            raise ValueError(reason)
        return v or None

    @field_validator("authorize_url", "token_url", "device_authorization_url")
    @classmethod
    def _urls(cls, v: str | None) -> str | None:
        return _url(v)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        for scope in v:
            if not scope or any(c.isspace() for c in scope) or check_single_line(scope):
                raise ValueError(f"'{scope}' is not a valid scope (no spaces)")
        return v

    @model_validator(mode="after")
    def _endpoints(self) -> OAuth2ConfigSpec:
        if self.provider is Provider.GENERIC and not self.token_url:
            raise ValueError("token_url: is required for a generic provider")
        if self.provider is Provider.MICROSOFT and not self.tenant:
            self.tenant = "common" if self.grant is not Grant.CLIENT_CREDENTIALS else None
            if self.tenant is None:
                raise ValueError("tenant: is required for Microsoft client credentials")
        return self


class OAuth2ConfigRead(BaseModel):
    id: int
    name: str
    provider: Provider
    grant: Grant
    client_id: str
    client_secret_set: bool
    tenant: str | None
    authorize_url: str | None
    token_url: str | None
    device_authorization_url: str | None = None
    scopes: list[str]
    username: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    used_by: list[str] = []

    @classmethod
    def build(cls, row: Any, used_by: list[str]) -> OAuth2ConfigRead:
        return cls(
            id=row.id,
            **row.spec,
            client_secret_set=row.client_secret is not None,
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
            used_by=used_by,
        )


class OAuth2LastError(BaseModel):
    error: str
    error_description: str | None = None
    at: datetime | None = None


class OAuth2Status(BaseModel):
    """Where a configuration's connection stands. Never contains a token.

    ``state``: ``connected``; ``consent_needed`` (a person must connect again — deliveries of
    ``paused_profiles`` wait); ``not_connected`` (nobody signed in yet); ``backing_off`` (the
    token endpoint failed; postroom retries after ``retry_after``).
    """

    name: str
    provider: Provider
    grant: Grant
    state: str
    consent_needed: bool
    account: str | None
    username: str | None
    scopes: list[str]
    access_token_expires_at: datetime | None
    last_refresh_at: datetime | None
    connected_at: datetime | None
    last_error: OAuth2LastError | None
    retry_after: datetime | None
    paused_profiles: list[str]
