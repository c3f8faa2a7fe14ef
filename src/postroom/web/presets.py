"""Presets for common mail providers (pure): host, port and security, and how to sign in.

A preset fills fields of the profile form; it never decides anything on its own. The
``signin`` note tells the administrator whether an app password or OAuth2 is needed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["PRESETS", "Preset", "preset_note", "preset_values", "presets_json"]


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    signin: str
    imap_host: str | None = None
    imap_port: int | None = None
    imap_security: str | None = None
    username: str | None = None


PRESETS: tuple[Preset, ...] = (
    Preset(
        "gmail",
        "Gmail / Google Workspace",
        "smtp.gmail.com",
        587,
        "starttls",
        "Needs an app password (Google Account → Security → App passwords, with 2-Step "
        "Verification on) or OAuth2. The username is the full address.",
        "imap.gmail.com",
        993,
        "tls",
    ),
    Preset(
        "microsoft365",
        "Microsoft 365 (Exchange Online)",
        "smtp.office365.com",
        587,
        "starttls",
        "Use OAuth2: basic SMTP AUTH is off by default for most tenants (error 5.7.139). "
        "The username is the full address.",
        "outlook.office365.com",
        993,
        "tls",
    ),
    Preset(
        "outlook",
        "Outlook.com / Hotmail",
        "smtp-mail.outlook.com",
        587,
        "starttls",
        "Use OAuth2: Microsoft is retiring password sign-in for Outlook.com mail clients.",
        "outlook.office365.com",
        993,
        "tls",
    ),
    Preset(
        "yahoo",
        "Yahoo Mail",
        "smtp.mail.yahoo.com",
        465,
        "tls",
        "Needs an app password (Account security → Generate app password).",
        "imap.mail.yahoo.com",
        993,
        "tls",
    ),
    Preset(
        "icloud",
        "iCloud Mail",
        "smtp.mail.me.com",
        587,
        "starttls",
        "Needs an app-specific password (appleid.apple.com → Sign-In and Security). "
        "The username is the iCloud address.",
        "imap.mail.me.com",
        993,
        "tls",
    ),
    Preset(
        "fastmail",
        "Fastmail",
        "smtp.fastmail.com",
        465,
        "tls",
        "Needs an app password (Settings → Privacy & Security → Integrations).",
        "imap.fastmail.com",
        993,
        "tls",
    ),
    Preset(
        "zoho",
        "Zoho Mail",
        "smtp.zoho.com",
        465,
        "tls",
        "Needs an app-specific password when two-factor authentication is on. Accounts in "
        "other regions use smtp.zoho.eu, smtp.zoho.in, …",
        "imap.zoho.com",
        993,
        "tls",
    ),
    Preset(
        "ses",
        "Amazon SES",
        "email-smtp.us-east-1.amazonaws.com",
        587,
        "starttls",
        "Needs SES SMTP credentials (SES console → SMTP settings), not your AWS access keys. "
        "Change the region in the host name to yours.",
    ),
    Preset(
        "sendgrid",
        "SendGrid",
        "smtp.sendgrid.net",
        587,
        "starttls",
        "The username is literally 'apikey'; the password is a SendGrid API key with Mail "
        "Send permission.",
        username="apikey",
    ),
    Preset(
        "mailgun",
        "Mailgun",
        "smtp.mailgun.org",
        587,
        "starttls",
        "Needs the SMTP credentials of your sending domain (Domain settings → SMTP "
        "credentials). EU domains use smtp.eu.mailgun.org.",
    ),
    Preset(
        "postmark",
        "Postmark",
        "smtp.postmarkapp.com",
        587,
        "starttls",
        "Use a Server API token as both username and password.",
    ),
)

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
