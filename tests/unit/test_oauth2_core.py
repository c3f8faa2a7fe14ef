"""Pure OAuth2 parts: provider presets, PKCE and URLs, token responses, SASL encodings."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from postroom.oauth2.protocol import (
    EndpointError,
    TokenGrant,
    account_from_id_token,
    authorization_url,
    new_pkce,
    parse_device_response,
    parse_redirect,
    parse_token_response,
)
from postroom.oauth2.providers import (
    GOOGLE_SCOPES,
    MICROSOFT_APP_SCOPES,
    MICROSOFT_DELEGATED_SCOPES,
    ProviderError,
    resolve,
)
from postroom.oauth2.sasl import (
    choose_mechanism,
    describe_failure,
    oauthbearer_response,
    xoauth2_response,
)
from postroom.oauth2.schemas import OAuth2ConfigSpec
from postroom.oauth2.tokens import AccessToken


def spec(**kw: object) -> OAuth2ConfigSpec:
    return OAuth2ConfigSpec.model_validate({"name": "x", "client_id": "id", **kw})


# -- providers ----------------------------------------------------------------------------------


def test_google_preset() -> None:
    e = resolve(spec(provider="google"))
    assert e.authorize_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert e.token_url == "https://oauth2.googleapis.com/token"
    assert e.scopes == GOOGLE_SCOPES == ("https://mail.google.com/",)
    assert e.authorize_params == {"access_type": "offline", "prompt": "consent"}
    with pytest.raises(ProviderError, match="client-credentials"):
        resolve(spec(provider="google", grant="client_credentials"))
    with pytest.raises(ProviderError, match="device flow"):
        resolve(spec(provider="google", grant="device_code"))


def test_microsoft_is_tenant_aware() -> None:
    e = resolve(spec(provider="microsoft", tenant="contoso.onmicrosoft.com"))
    base = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0"
    assert (e.authorize_url, e.token_url, e.device_authorization_url) == (
        f"{base}/authorize", f"{base}/token", f"{base}/devicecode",
    )  # fmt: skip
    assert e.scopes == MICROSOFT_DELEGATED_SCOPES
    assert "https://outlook.office.com/SMTP.Send" in e.scopes and "offline_access" in e.scopes
    assert resolve(spec(provider="microsoft")).token_url.startswith(
        "https://login.microsoftonline.com/common/"
    )
    app_only = resolve(spec(provider="microsoft", grant="client_credentials", tenant="t-id"))
    assert app_only.scopes == MICROSOFT_APP_SCOPES == ("https://outlook.office365.com/.default",)
    with pytest.raises(ProviderError, match="tenant"):
        resolve(spec(provider="microsoft", grant="client_credentials", tenant="common"))


def test_own_urls_and_scopes_win_and_generic_needs_them() -> None:
    e = resolve(spec(provider="microsoft", token_url="https://login.example/t", scopes=["a"]))
    assert e.token_url == "https://login.example/t" and e.scopes == ("a",)
    with pytest.raises(ValueError):
        spec(provider="generic")  # the schema itself wants a token URL
    with pytest.raises(ProviderError, match="authorize_url"):
        resolve(spec(provider="generic", token_url="https://as.example/token"))
    with pytest.raises(ProviderError, match="device_authorization_url"):
        resolve(spec(provider="generic", grant="device_code", token_url="https://as.example/t"))


# -- PKCE, URLs, redirects --------------------------------------------------------------------


def test_pkce_s256() -> None:
    pkce = new_pkce()
    assert 43 <= len(pkce.verifier) <= 128
    digest = hashlib.sha256(pkce.verifier.encode()).digest()
    assert pkce.challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert pkce.verifier not in repr(pkce)


def test_authorization_url_carries_pkce_state_and_sign_in_scopes() -> None:
    e = resolve(spec(provider="microsoft", tenant="t"))
    pkce = new_pkce()
    url = authorization_url(
        e, client_id="cid", redirect_uri="https://p.example/oauth2/callback", state="s1",
        pkce=pkce, login_hint="a@b.c",
    )  # fmt: skip
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert q["code_challenge"] == pkce.challenge and q["code_challenge_method"] == "S256"
    assert q["state"] == "s1" and q["response_type"] == "code" and q["login_hint"] == "a@b.c"
    assert q["scope"].split() == [*MICROSOFT_DELEGATED_SCOPES, "openid", "profile", "email"]
    assert pkce.verifier not in url


@pytest.mark.parametrize(
    ("pasted", "expected"),
    [
        ("http://localhost:1/?code=abc&state=xyz", ("abc", "xyz", {})),
        ("  ?code=abc&state=xyz\n", ("abc", "xyz", {})),
        ("abc", ("abc", None, {})),
        (
            "http://localhost:1/?error=access_denied&error_description=no&state=s",
            (None, "s", {"error": "access_denied", "error_description": "no"}),
        ),
    ],
)
def test_parse_redirect(pasted: str, expected: tuple[object, ...]) -> None:
    assert parse_redirect(pasted) == expected


# -- token endpoint answers ---------------------------------------------------------------------


def body(**kw: object) -> bytes:
    return json.dumps(kw).encode()


def test_token_response_success_and_repr_hides_tokens() -> None:
    grant = parse_token_response(
        200,
        body(
            access_token="AT", token_type="Bearer", expires_in=3599, refresh_token="RT", scope="a b"
        ),  # fmt: skip
    )
    assert isinstance(grant, TokenGrant)
    assert (grant.access_token, grant.refresh_token, grant.expires_in) == ("AT", "RT", 3599.0)
    assert grant.scope == ("a", "b")
    assert "AT" not in repr(grant) and "RT" not in repr(grant)


@pytest.mark.parametrize(
    ("status", "payload", "error", "transient"),
    [
        (400, body(error="invalid_grant", error_description="AADSTS70000"), "invalid_grant", False),
        (401, body(error="invalid_client"), "invalid_client", False),
        (503, b"<html>down</html>", "http_503", True),
        (429, body(error="slow"), "slow", True),
        (400, body(error="temporarily_unavailable"), "temporarily_unavailable", True),
        (200, body(token_type="Bearer"), "invalid_response", True),
        (200, body(access_token="x", token_type="mac"), "invalid_response", False),
    ],
)
def test_token_response_errors(status: int, payload: bytes, error: str, transient: bool) -> None:
    result = parse_token_response(status, payload)
    assert isinstance(result, EndpointError)
    assert (result.error, result.transient) == (error, transient)


def test_error_description_is_one_printable_line() -> None:
    result = parse_token_response(400, body(error="invalid_grant", error_description="a\nb\x00c"))
    assert isinstance(result, EndpointError) and result.description == "a b c"


def test_device_response_accepts_microsofts_field_names() -> None:
    result = parse_device_response(
        200,
        body(
            device_code="D",
            user_code="ABC-DEF",
            verification_url="https://x/dev",
            expires_in=900,
            interval=5,
        ),  # fmt: skip
    )
    assert not isinstance(result, EndpointError)
    assert result.verification_uri == "https://x/dev" and result.interval == 5


def _jwt(claims: dict[str, object]) -> str:
    part = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJub25lIn0.{part}.sig"


def test_account_from_id_token() -> None:
    assert account_from_id_token(_jwt({"email": "a@example.com"})) == "a@example.com"
    assert account_from_id_token(_jwt({"preferred_username": "b@contoso.com"})) == "b@contoso.com"
    assert account_from_id_token(_jwt({"sub": "123"})) is None
    assert account_from_id_token("garbage") is None and account_from_id_token(None) is None


# -- SASL -----------------------------------------------------------------------------------------


def test_xoauth2_and_oauthbearer_encodings() -> None:
    assert xoauth2_response("a@b.c", "T") == b"user=a@b.c\x01auth=Bearer T\x01\x01"
    assert (
        oauthbearer_response("a,b=c@d", "T", host="smtp.x", port=587)
        == b"n,a=a=2Cb=3Dc@d,\x01host=smtp.x\x01port=587\x01auth=Bearer T\x01\x01"
    )
    with pytest.raises(ValueError):
        xoauth2_response("a@b.c\x01x", "T")


def test_mechanism_choice_and_failure_description() -> None:
    assert choose_mechanism(["PLAIN", "OAUTHBEARER", "XOAUTH2"]) == "xoauth2"
    assert choose_mechanism(["oauthbearer"]) == "oauthbearer"
    assert choose_mechanism(["plain", "login"]) is None
    challenge = base64.b64encode(b'{"status":"401","schemes":"bearer","scope":"mail"}')
    assert describe_failure(challenge) == "status 401, schemes bearer, scope mail"
    assert describe_failure("not base64!") == ""


def test_access_token_is_replaced_shortly_before_expiry_and_never_shown() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    token = AccessToken(
        config="m365", token="SECRET", username="a@b.c", issued_at=now,
        expires_at=now + timedelta(hours=1), version=1,
    )  # fmt: skip
    assert token.usable(now + timedelta(minutes=57))
    assert not token.usable(now + timedelta(minutes=58, seconds=1))  # 2 minutes ahead
    short = AccessToken(
        config="m", token="S", username=None, issued_at=now,
        expires_at=now + timedelta(seconds=10), version=1,
    )  # fmt: skip
    assert short.usable(now + timedelta(seconds=8)) and not short.usable(now + timedelta(seconds=9))
    assert "SECRET" not in repr(token) and "SECRET" not in token.describe()
