"""Built-in data about common mail providers (pure): presets, their domains, their MX hosts.

Used by the profile form's presets and by settings detection
(:mod:`postroom.profiles.detect`): an address at a known domain, or a domain whose MX hosts
belong to a known provider, gets that provider's settings without asking the network for more.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DOMAINS", "MX_SUFFIXES", "PRESETS", "Preset", "preset_by_key", "provider_for_mx"]


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
    #: the sign-in the note asks for: "basic" (password / app password) or "oauth2"
    auth: str = "basic"


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
        auth="oauth2",
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
        auth="oauth2",
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

#: Address domains whose mail a preset serves (lower case, IDNA form).
DOMAINS: dict[str, str] = {
    **dict.fromkeys(("gmail.com", "googlemail.com"), "gmail"),
    **dict.fromkeys(
        ("outlook.com", "hotmail.com", "hotmail.co.uk", "live.com", "msn.com"), "outlook"
    ),
    **dict.fromkeys(
        ("yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de", "ymail.com", "rocketmail.com"),
        "yahoo",
    ),
    **dict.fromkeys(("icloud.com", "me.com", "mac.com"), "icloud"),
    **dict.fromkeys(("fastmail.com", "fastmail.fm", "messagingengine.com"), "fastmail"),
    **dict.fromkeys(("zoho.com", "zohomail.com"), "zoho"),
}

#: MX host name suffixes of providers that host other people's domains (custom domains at
#: Google Workspace, Microsoft 365, …). Checked in order; the first match wins.
MX_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("aspmx.l.google.com", "gmail"),
    ("googlemail.com", "gmail"),
    ("google.com", "gmail"),
    ("mail.protection.outlook.com", "microsoft365"),
    ("olc.protection.outlook.com", "outlook"),
    ("yahoodns.net", "yahoo"),
    ("mail.icloud.com", "icloud"),
    ("messagingengine.com", "fastmail"),
    ("zoho.com", "zoho"),
    ("zoho.eu", "zoho"),
    ("mailgun.org", "mailgun"),
)


def preset_by_key(key: str) -> Preset | None:
    return _BY_KEY.get(key)


def provider_for_mx(host: str) -> Preset | None:
    """The preset whose MX host ``host`` is (trailing dot and case ignored), if any."""
    name = host.rstrip(".").lower()
    for suffix, key in MX_SUFFIXES:
        if name == suffix or name.endswith("." + suffix):
            return _BY_KEY[key]
    return None
