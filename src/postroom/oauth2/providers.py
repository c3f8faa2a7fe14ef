"""Provider presets (pure): endpoints, default scopes and what each provider supports.

A configuration's own ``authorize_url``/``token_url``/``device_authorization_url`` always win
over the preset (sovereign clouds, proxies, tests); ``scopes`` left empty take the preset's
defaults for the configuration's grant. Nothing here does I/O.

::

    endpoints = resolve(spec)       # -> Endpoints, or raises ProviderError
    endpoints.token_url             # 'https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from postroom.oauth2.schemas import Grant, OAuth2ConfigSpec, Provider

__all__ = [
    "GOOGLE_SCOPES",
    "MICROSOFT_APP_SCOPES",
    "MICROSOFT_DELEGATED_SCOPES",
    "Endpoints",
    "ProviderError",
    "resolve",
]

GOOGLE_SCOPES = ("https://mail.google.com/",)
MICROSOFT_DELEGATED_SCOPES = (
    "https://outlook.office.com/SMTP.Send",
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "offline_access",
)
MICROSOFT_APP_SCOPES = ("https://outlook.office365.com/.default",)

_GOOGLE_AUTHORIZE = "https://accounts.google.com/o/oauth2/v2/auth"
_GOOGLE_TOKEN = "https://oauth2.googleapis.com/token"
_MICROSOFT_BASE = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0"


class ProviderError(ValueError):
    """The configuration asks for something its provider cannot do; the message says what."""


@dataclass(frozen=True)
class Endpoints:
    """Where to send a person and where to fetch tokens, with the scopes to ask for.

    ``sign_in_scopes`` are OpenID Connect scopes added to the authorization request only, so
    the token response names the signed-in account (an ``id_token``); they are never sent on
    refresh. ``authorize_params`` are extra query parameters of the authorization URL.
    """

    provider: Provider
    grant: Grant
    token_url: str
    authorize_url: str | None = None
    device_authorization_url: str | None = None
    scopes: tuple[str, ...] = ()
    sign_in_scopes: tuple[str, ...] = ()
    authorize_params: dict[str, str] = field(default_factory=dict)


def _microsoft(spec: OAuth2ConfigSpec) -> Endpoints:
    tenant = spec.tenant or "common"
    if spec.grant is Grant.CLIENT_CREDENTIALS and tenant in (
        "common",
        "organizations",
        "consumers",
    ):
        raise ProviderError(
            f"tenant: client credentials need your tenant's ID or domain, not '{tenant}' "
            "(Entra admin center → Overview → Tenant ID)."
        )
    base = _MICROSOFT_BASE.format(tenant=quote(tenant, safe=""))
    app_only = spec.grant is Grant.CLIENT_CREDENTIALS
    return Endpoints(
        provider=Provider.MICROSOFT,
        grant=spec.grant,
        token_url=spec.token_url or f"{base}/token",
        authorize_url=spec.authorize_url or f"{base}/authorize",
        device_authorization_url=spec.device_authorization_url or f"{base}/devicecode",
        scopes=tuple(spec.scopes)
        or (MICROSOFT_APP_SCOPES if app_only else MICROSOFT_DELEGATED_SCOPES),
        # `profile` yields preferred_username (the sign-in address); `email` the mail claim
        sign_in_scopes=("openid", "profile", "email"),
        authorize_params={"prompt": "select_account"},
    )


def _google(spec: OAuth2ConfigSpec) -> Endpoints:
    if spec.grant is Grant.CLIENT_CREDENTIALS:
        raise ProviderError(
            "grant: Google offers no client-credentials grant for Gmail; use "
            "'authorization_code' (a person signs in once)."
        )
    if spec.grant is Grant.DEVICE_CODE and not spec.device_authorization_url:
        raise ProviderError(
            "grant: Google's device flow does not allow the Gmail scope "
            "(https://mail.google.com/); use 'authorization_code'."
        )
    return Endpoints(
        provider=Provider.GOOGLE,
        grant=spec.grant,
        token_url=spec.token_url or _GOOGLE_TOKEN,
        authorize_url=spec.authorize_url or _GOOGLE_AUTHORIZE,
        device_authorization_url=spec.device_authorization_url,
        scopes=tuple(spec.scopes) or GOOGLE_SCOPES,
        sign_in_scopes=("openid", "email"),
        # offline: a refresh token; consent: a new one even when the app was approved before
        authorize_params={"access_type": "offline", "prompt": "consent"},
    )


def _generic(spec: OAuth2ConfigSpec) -> Endpoints:
    if not spec.token_url:
        raise ProviderError("token_url: is required for a generic provider")
    if spec.grant is Grant.AUTHORIZATION_CODE and not spec.authorize_url:
        raise ProviderError("authorize_url: is required for the authorization code grant")
    if spec.grant is Grant.DEVICE_CODE and not spec.device_authorization_url:
        raise ProviderError(
            "device_authorization_url: is required for the device code grant "
            "(the provider's RFC 8628 device authorization endpoint)"
        )
    return Endpoints(
        provider=Provider.GENERIC,
        grant=spec.grant,
        token_url=spec.token_url,
        authorize_url=spec.authorize_url,
        device_authorization_url=spec.device_authorization_url,
        scopes=tuple(spec.scopes),
    )


def resolve(spec: OAuth2ConfigSpec) -> Endpoints:
    """The endpoints and scopes for ``spec``. Raises :class:`ProviderError`."""
    match spec.provider:
        case Provider.MICROSOFT:
            return _microsoft(spec)
        case Provider.GOOGLE:
            return _google(spec)
        case _:
            return _generic(spec)
