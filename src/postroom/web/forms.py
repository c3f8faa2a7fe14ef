"""The profile form (pure): flat dotted field names ↔ the nested profile the services take.

Inputs are named like the profile's fields (``smtp.port``), so a ``FieldError`` from the
same validation the API uses lands on its input without any mapping table. Values travel
as text; an empty timeout means "no timeout" (null), an empty secret means "keep".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from postroom.errors import FieldError
from postroom.profiles.schemas import ProfileRead

__all__ = [
    "FIELDS",
    "IMAP_ENABLED",
    "IMAP_MOVE_TO",
    "LABELS",
    "FormValues",
    "Kind",
    "blank_values",
    "errors_by_field",
    "input_id",
    "profile_data",
    "values_from_form",
    "values_from_profile",
]

FormValues = dict[str, str]


class Kind(Enum):
    TEXT = "text"  # sent as typed
    OPTIONAL = "optional"  # empty → null
    INT = "int"  # a required number
    OPTIONAL_INT = "optional_int"  # empty → null ("no limit")
    TIMEOUT = "timeout"  # empty → null ("no timeout", as the seed says)
    BOOL = "bool"  # a checkbox: present → true
    SECRET = "secret"  # empty → left out, so the stored secret is kept
    CHOICE = "choice"


_SERVER: dict[str, Kind] = {
    "host": Kind.TEXT,
    "port": Kind.INT,
    "security": Kind.CHOICE,
    "verify_certificate": Kind.BOOL,
    "ca_bundle": Kind.OPTIONAL,
    "auth": Kind.CHOICE,
    "username": Kind.OPTIONAL,
    "password": Kind.SECRET,
    "oauth2_config": Kind.OPTIONAL,
    "connect_timeout_s": Kind.TIMEOUT,
}

FIELDS: dict[str, Kind] = {
    "name": Kind.TEXT,
    "description": Kind.TEXT,
    "enabled": Kind.BOOL,
    **{f"smtp.{k}": v for k, v in _SERVER.items()},
    "smtp.auth_domain": Kind.OPTIONAL,
    "smtp.send_timeout_s": Kind.TIMEOUT,
    "smtp.local_hostname": Kind.OPTIONAL,
    "sender.from_address": Kind.TEXT,
    "sender.from_name": Kind.OPTIONAL,
    "sender.reply_to": Kind.OPTIONAL,
    **{f"imap.{k}": v for k, v in _SERVER.items()},
    "imap.folder": Kind.TEXT,
    "imap.processed": Kind.CHOICE,
    "imap.poll_interval_s": Kind.INT,
    "imap.use_idle": Kind.BOOL,
    "email_actions_base_url": Kind.OPTIONAL,
    "rate_limit_per_minute": Kind.OPTIONAL_INT,
    "max_connections": Kind.INT,
}

# Inputs of the form that are not profile fields themselves.
IMAP_ENABLED = "imap.enabled"
IMAP_MOVE_TO = "imap.move_to"
TEST_SEND_TO = "test_send_to"
_FORM_ONLY: dict[str, Kind] = {IMAP_ENABLED: Kind.BOOL, IMAP_MOVE_TO: Kind.TEXT}

_NUMBER_MESSAGES = ("must be a whole number", "must be a number")


def blank_values() -> FormValues:
    """A new profile's form: the profile's own defaults, basic auth, IMAP off."""
    return {
        "enabled": "1",
        "smtp.port": "587",
        "smtp.security": "starttls",
        "smtp.verify_certificate": "1",
        "smtp.auth": "basic",
        "smtp.connect_timeout_s": "30",
        "smtp.send_timeout_s": "60",
        IMAP_ENABLED: "",
        "imap.port": "993",
        "imap.security": "tls",
        "imap.verify_certificate": "1",
        "imap.auth": "basic",
        "imap.folder": "INBOX",
        "imap.processed": "mark_seen",
        "imap.poll_interval_s": "60",
        "imap.use_idle": "1",
        "imap.connect_timeout_s": "30",
        "max_connections": "4",
    }


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def values_from_profile(profile: ProfileRead) -> FormValues:
    """The form showing a saved profile (secrets never: only whether one is set)."""
    values = blank_values()
    values |= {
        "name": profile.name,
        "description": profile.description,
        "enabled": _text(profile.enabled),
        "email_actions_base_url": _text(profile.email_actions_base_url),
        "rate_limit_per_minute": _text(profile.rate_limit_per_minute),
        "max_connections": _text(profile.max_connections),
    }
    for key, value in profile.sender.model_dump().items():
        values[f"sender.{key}"] = _text(value)
    sides: Iterable[tuple[str, dict[str, Any] | None]] = (
        ("smtp", profile.smtp),
        ("imap", profile.imap),
    )
    for side, section in sides:
        if section is None:
            continue
        for key, value in section.items():
            name = f"{side}.{key}"
            if name in FIELDS and FIELDS[name] is not Kind.SECRET:
                values[name] = _text(value)
    if profile.imap is not None:
        values[IMAP_ENABLED] = "1"
        processed = values.get("imap.processed", "")
        if processed.startswith("move:"):
            values["imap.processed"], values[IMAP_MOVE_TO] = "move", processed[5:]
    return values


def values_from_form(form: Mapping[str, Any]) -> FormValues:
    """The profile fields of a submitted form, as text (an absent checkbox is false)."""
    values: FormValues = {}
    for name, kind in (FIELDS | _FORM_ONLY).items():
        raw = form.get(name)
        if kind is Kind.BOOL:
            values[name] = "1" if raw not in (None, "", "0", "false") else ""
        else:
            values[name] = raw if isinstance(raw, str) else ""
    return values


def _convert(kind: Kind, text: str) -> Any:
    match kind:
        case Kind.BOOL:
            return text == "1"
        case Kind.OPTIONAL | Kind.OPTIONAL_INT | Kind.TIMEOUT:
            return text.strip() or None
        case Kind.INT:
            return text.strip() or None
    return text


def profile_data(values: Mapping[str, str], *, imap: bool | None = None) -> dict[str, Any]:
    """The nested profile for the services. ``imap`` overrides the form's IMAP switch."""
    with_imap = values.get(IMAP_ENABLED) == "1" if imap is None else imap
    data: dict[str, Any] = {"smtp": {}, "sender": {}}
    if with_imap:
        data["imap"] = {}
    for name, kind in FIELDS.items():
        head, _, tail = name.partition(".")
        if tail and head not in data:
            continue
        text = values.get(name, "")
        if kind is Kind.SECRET and not text:
            continue
        target = data[head] if tail else data
        target[tail or head] = _convert(kind, text)
    if with_imap and data["imap"].get("processed") == "move":
        data["imap"]["processed"] = "move:" + values.get(IMAP_MOVE_TO, "").strip()
    if not with_imap:
        data["imap"] = None
    return data


def errors_by_field(
    errors: Iterable[FieldError], values: Mapping[str, str]
) -> dict[str, list[str]]:
    """Messages per input name; errors that belong to no input are listed under ``""``."""
    out: dict[str, list[str]] = {}
    for error in errors:
        field = error.field
        message = error.message
        if field == "send_to":
            field = TEST_SEND_TO
        elif field == "imap.processed" and values.get("imap.processed") == "move":
            field = IMAP_MOVE_TO
            message = "name the folder to move processed mail to"
        elif field not in FIELDS and field not in _FORM_ONLY:
            message = f"{field}: {message}" if field else message
            field = ""
        elif not values.get(field, "").strip() and message in _NUMBER_MESSAGES:
            message = "is required"
        out.setdefault(field, []).append(message)
    return out


#: What each input is called on the page (for error summaries).
LABELS: dict[str, str] = {
    "name": "Profile name",
    "description": "Description",
    "enabled": "Enabled",
    "detect_address": "Detect from an address",
    "smtp.host": "SMTP host",
    "smtp.port": "SMTP port",
    "smtp.security": "SMTP security",
    "smtp.verify_certificate": "Verify the SMTP server's certificate",
    "smtp.ca_bundle": "SMTP CA bundle",
    "smtp.auth": "SMTP authentication",
    "smtp.username": "SMTP username",
    "smtp.password": "SMTP password",
    "smtp.auth_domain": "Auth domain",
    "smtp.oauth2_config": "SMTP OAuth2 configuration",
    "smtp.connect_timeout_s": "Connection timeout",
    "smtp.send_timeout_s": "Send timeout",
    "smtp.local_hostname": "EHLO host name",
    "sender.from_address": "From address",
    "sender.from_name": "From display name",
    "sender.reply_to": "Reply-To address",
    "imap.host": "IMAP host",
    "imap.port": "IMAP port",
    "imap.security": "IMAP security",
    "imap.verify_certificate": "Verify the IMAP server's certificate",
    "imap.ca_bundle": "IMAP CA bundle",
    "imap.auth": "IMAP authentication",
    "imap.username": "IMAP username",
    "imap.password": "IMAP password",
    "imap.oauth2_config": "IMAP OAuth2 configuration",
    "imap.connect_timeout_s": "IMAP connection timeout",
    "imap.folder": "Folder",
    "imap.processed": "After processing",
    IMAP_MOVE_TO: "Move to folder",
    "imap.poll_interval_s": "Poll interval",
    "imap.use_idle": "Use IDLE",
    "email_actions_base_url": "Email actions base URL",
    "rate_limit_per_minute": "Messages per minute",
    "max_connections": "Simultaneous connections",
    TEST_SEND_TO: "Send a test message to",
}


def input_id(name: str) -> str:
    """The HTML id of the input named ``name`` (``smtp.port`` → ``f-smtp-port``)."""
    return "f-" + name.replace(".", "-").replace("_", "-")
