"""Presets for common mail providers (pure): host, port and security, and how to sign in.

The provider data itself lives in :mod:`postroom.profiles.providers` (detection uses it too).
A preset fills fields of the profile form; it never decides anything on its own. The
``signin`` note tells the administrator whether an app password or OAuth2 is needed.
"""

from __future__ import annotations

from dataclasses import asdict

from postroom.profiles.providers import PRESETS, Preset

__all__ = ["PRESETS", "Preset", "preset_note", "preset_values", "presets_json"]


_BY_KEY = {p.key: p for p in PRESETS}


def preset_values(key: str) -> dict[str, str]:
    """The form fields ``key`` fills (dotted names → text); empty for an unknown key."""
    preset = _BY_KEY.get(key)
    if preset is None:
        return {}
    values = {
        "smtp.host": preset.smtp_host,
        "smtp.port": str(preset.smtp_port),
        "smtp.security": preset.smtp_security,
        "smtp.auth": "basic",
    }
    if preset.username:
        values["smtp.username"] = preset.username
    if preset.imap_host and preset.imap_port and preset.imap_security:
        values |= {
            "imap.host": preset.imap_host,
            "imap.port": str(preset.imap_port),
            "imap.security": preset.imap_security,
        }
    return values


def presets_json() -> list[dict[str, object]]:
    """Every preset with the fields it fills, for the form's script."""
    return [asdict(p) | {"values": preset_values(p.key)} for p in PRESETS]


def preset_note(key: str) -> str | None:
    """How to sign in with the provider of ``key``."""
    preset = _BY_KEY.get(key)
    return preset.signin if preset else None
