"""The security headers every HTML page of postroom carries, in one place.

The admin UI's pages get them from ``WebState.finish``; pages served outside the UI's
router (the OAuth2 callback) call :func:`apply_security_headers` themselves.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders

__all__ = ["CSP", "apply_security_headers"]

#: Scripts and styles only from postroom's own vendored files; nothing may frame a page.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)

_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
)


def apply_security_headers(headers: MutableHeaders) -> None:
    """Add the security headers a response does not set itself (a page may be stricter)."""
    for name, value in _HEADERS:
        headers.setdefault(name, value)
