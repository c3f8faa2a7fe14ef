"""The one-time setup link that lets the first person create the first admin account.

``postroom serve`` calls :func:`setup_url` at start: while the database has no admin, it
stores the hash of a fresh random token (replacing any earlier one) and returns the link
to print. The link works once, for 24 hours, and only while there is still no admin.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

from postroom.app import Postroom
from postroom.web.store import delete_setting, get_setting, set_setting, take_setting

__all__ = [
    "SETUP_TOKEN_TTL_S",
    "consume_setup_token",
    "restore_setup_token",
    "setup_url",
    "valid_setup_token",
]

SETUP_TOKEN_TTL_S = 24 * 3600
_KEY = "setup_token_hash"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _base_url(pr: Postroom) -> str:
    if pr.settings.public_url:
        return pr.settings.public_url.rstrip("/")
    host = pr.settings.host
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{pr.settings.port}"


def setup_url(pr: Postroom, *, base_url: str | None = None) -> str | None:
    """A one-time link to create the first admin, or None when an admin exists.

    ``base_url`` is where browsers reach this server (default: ``POSTROOM_PUBLIC_URL``, else
    ``http://POSTROOM_HOST:POSTROOM_PORT``). Each call makes a new token and voids the last.
    """
    if pr.accounts.has_admin():
        delete_setting(pr.sessions, _KEY)
        return None
    token = secrets.token_urlsafe(32)
    record = {"sha256": _digest(token), "expires": int(time.time()) + SETUP_TOKEN_TTL_S}
    set_setting(pr.sessions, _KEY, json.dumps(record, sort_keys=True))
    return f"{(base_url or _base_url(pr)).rstrip('/')}/setup/{token}"


def _stored(pr: Postroom) -> tuple[str, dict[str, object]] | None:
    raw = get_setting(pr.sessions, _KEY)
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return (raw, record) if isinstance(record, dict) else None


def valid_setup_token(pr: Postroom, token: str) -> bool:
    """True while ``token`` is the current, unexpired setup token and no admin exists."""
    stored = _stored(pr)
    if stored is None or len(token) > 200:
        return False
    _, record = stored
    expires = record.get("expires")
    if not isinstance(expires, int) or expires < time.time():
        return False
    if not hmac.compare_digest(str(record.get("sha256", "")), _digest(token)):
        return False
    return not pr.accounts.has_admin()


def consume_setup_token(pr: Postroom, token: str) -> str | None:
    """Use up ``token``; returns a receipt for :func:`restore_setup_token`, None if invalid.

    Two simultaneous submissions cannot both succeed: only one deletes the stored row.
    """
    stored = _stored(pr)
    if stored is None or not valid_setup_token(pr, token):
        return None
    raw, _ = stored
    return raw if take_setting(pr.sessions, _KEY, raw) else None


def restore_setup_token(pr: Postroom, receipt: str) -> None:
    """Put a consumed token back (the admin it was for could not be created)."""
    set_setting(pr.sessions, _KEY, receipt)
