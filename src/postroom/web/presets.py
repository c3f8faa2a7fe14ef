"""Presets for common mail providers (pure): host, port and security, and how to sign in.

The provider data itself lives in :mod:`postroom.profiles.providers` (detection uses it too).
A preset fills fields of the profile form; it never decides anything on its own. The
``signin`` note tells the administrator whether an app password or OAuth2 is needed.
"""

from __future__ import annotations

from dataclasses import asdict

from postroom.profiles.providers import PRESETS, Preset

__all__ = [
    "PRESETS",
    "PRESET_USERNAMES",
    "Preset",
    "apply_preset",
    "preset_note",
    "preset_values",
    "presets_json",
]


_BY_KEY = {p.key: p for p in PRESETS}
#: usernames a preset fills in (SendGrid's "apikey"): another preset may clear them
PRESET_USERNAMES = frozenset(p.username for p in PRESETS if p.username)


def preset_values(key: str) -> dict[str, str]:
    """The form fields ``key`` fills (dotted names → text); empty for an unknown key."""
    preset = _BY_KEY.get(key)
    if preset is None:
        return {}
    # Every preset fills the same fields (blank where it has nothing), so switching from one
    # preset to another leaves nothing of the previous one behind (an IMAP host, "apikey").
    values = {
        "smtp.host": preset.smtp_host,
        "smtp.port": str(preset.smtp_port),
        "smtp.security": preset.smtp_security,
        "smtp.auth": preset.auth,
        "smtp.username": preset.username or "",
        "imap.host": "",
        "imap.port": "993",
        "imap.security": "tls",
        "imap.auth": preset.auth,
    }
    if preset.imap_host and preset.imap_port and preset.imap_security:
        values |= {
            "imap.host": preset.imap_host,
            "imap.port": str(preset.imap_port),
            "imap.security": preset.imap_security,
        }
    return values


def apply_preset(current: dict[str, str], key: str) -> dict[str, str]:
    """``current`` form values with preset ``key`` applied. A username someone typed stays
    when the preset has none; only one a preset filled in is cleared."""
    values = preset_values(key)
    if not values:
        return dict(current)
    typed = current.get("smtp.username", "")
    if not values["smtp.username"] and typed not in PRESET_USERNAMES:
        values["smtp.username"] = typed
    return current | values


def presets_json() -> list[dict[str, object]]:
    """Every preset with the fields it fills, for the form's script."""
    return [
        asdict(p) | {"values": preset_values(p.key), "preset_usernames": sorted(PRESET_USERNAMES)}
        for p in PRESETS
    ]


def preset_note(key: str) -> str | None:
    """How to sign in with the provider of ``key``."""
    preset = _BY_KEY.get(key)
    return preset.signin if preset else None
