"""Strict, pure checks of mail addresses, host names and header-safe text.

Python's ``email.utils.parseaddr`` silently turns ``alice@example.org)<bob@example.com>``
into ``alice@example.org`` (CVE-2023-27043). Postroom never guesses: an address is
either exactly one ``local@domain`` or it is rejected with a reason.

Every check here runs in time linear in its input, and lengths are capped before any
pattern runs: Python's regex engine holds the GIL, so one backtracking pattern on a
hostile ``From`` or ``to`` would stop the web server, the worker and the sync together
(a 96 KB display name once took 20 s). RFC 5321 limits an address to 254 octets (a
path to 256) and a local part to 64; a mailbox as a whole ("Name <address>") is held to
one header line (998), its display name to 256 characters.
"""

from __future__ import annotations

import re
from functools import lru_cache

from postroom.smtp.i18n import ascii_domain

__all__ = [
    "MAX_ADDRESS_CHARS",
    "MAX_DISPLAY_NAME_CHARS",
    "MAX_MAILBOX_CHARS",
    "parse_mailbox",
    "check_addr_spec",
    "check_hostname",
    "check_single_line",
    "has_control_chars",
]

# RFC 5322 dot-atom local part (atext), plus UTF-8 for SMTPUTF8 mailboxes.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_LOCAL_RE = re.compile(rf"^{_ATEXT}+(\.{_ATEXT}+)*$")
_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9\-\u0080-\U0010ffff]{1,63}(?<!-)$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u0085]")
_CONTROL_OR_SPACE_RE = re.compile(r"[\s\x00-\x1f\x7f\u2028\u2029\u0085]")

MAX_ADDRESS_CHARS = 254  # RFC 5321 4.5.3.1.3: a path is 256 octets with its brackets
MAX_LOCAL_PART_CHARS = 64  # RFC 5321 4.5.3.1.1
MAX_DISPLAY_NAME_CHARS = 256
MAX_MAILBOX_CHARS = 998  # RFC 5322 2.1.1: one line


def has_control_chars(value: str) -> bool:
    """True when ``value`` holds CR, LF, NUL, another C0 control, DEL or a Unicode line break."""
    return _CONTROL_RE.search(value) is not None


def check_single_line(value: str) -> str | None:
    """Return a reason when ``value`` cannot be a single header-safe line, else None."""
    if has_control_chars(value):
        return "must be a single line without control characters (CR, LF, NUL, tab)"
    if "=?" in value and "?=" in value:
        # An RFC 2047 encoded word can smuggle a newline past the email package
        # (CVE-2024-6923); we encode headers ourselves, so callers never need to.
        return "must not contain an encoded word (=?…?=); give the text itself"
    return None


def check_hostname(value: str) -> str | None:
    """Return a reason when ``value`` is not a plausible DNS name or IP literal."""
    if not value:
        return "must not be empty"
    if has_control_chars(value) or any(c.isspace() for c in value):
        return "must be a host name or IP address without spaces or control characters"
    if len(value) > 253:
        return "must be at most 253 characters"
    if ":" in value:  # IPv6 literal
        import ipaddress

        try:
            ipaddress.IPv6Address(value.strip("[]"))
        except ValueError:
            return "is not a valid host name or IPv6 address"
        return None
    labels = value.rstrip(".").split(".")
    if not all(_LABEL_RE.match(label) for label in labels):
        return "is not a valid host name (letters, digits, hyphens and dots)"
    return None


# The common case in one match: an ASCII dot-atom, '@', two or more ASCII labels. What it
# accepts the full check below accepts too; anything else gets that check and its reason.
_ASCII_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+"
_ASCII_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_PLAIN_ADDR_RE = re.compile(
    rf"{_ASCII_ATOM}(?:\.{_ASCII_ATOM})*@{_ASCII_LABEL}(?:\.{_ASCII_LABEL})+", re.ASCII
)


def check_addr_spec(value: str) -> str | None:
    """Return a reason when ``value`` is not exactly one ``local@domain`` address."""
    if (
        len(value) <= MAX_ADDRESS_CHARS
        and _PLAIN_ADDR_RE.fullmatch(value)
        and value.index("@") <= MAX_LOCAL_PART_CHARS
    ):
        return None
    if not value:
        return "must not be empty"
    if _CONTROL_OR_SPACE_RE.search(value):
        return "must be a single address such as alerts@example.com, without spaces"
    if len(value) > MAX_ADDRESS_CHARS:
        return f"must be at most {MAX_ADDRESS_CHARS} characters"
    if value.count("@") != 1:
        return "must be a single address such as alerts@example.com"
    local, domain = value.split("@")
    if not local or len(local) > MAX_LOCAL_PART_CHARS or not _LOCAL_RE.match(local):
        return (
            "has an invalid part before '@' (write just the address, without a display name, "
            "quotes, brackets or parentheses)"
        )
    if domain.startswith("[") and domain.endswith("]"):
        import ipaddress

        literal = domain[1:-1]
        try:
            if literal.lower().startswith("ipv6:"):
                ipaddress.IPv6Address(literal[5:])
            else:
                ipaddress.IPv4Address(literal)
        except ValueError:
            return "has an invalid address literal after '@'"
        return None
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL_RE.match(label) for label in labels):
        return "has an invalid domain after '@' (for example example.com)"
    if not domain.isascii():
        try:
            ascii_domain(value)
        except ValueError:
            return "has a domain after '@' that is not a valid internationalized domain name"
    return None


def _split_mailbox(value: str) -> tuple[str, str]:
    """``'  Name <addr> '`` → (``'Name'``, ``'addr'``); anything else → (``''``, stripped value).

    What ``^\\s*([^<>]*?)\\s*<([^<>]+)>\\s*$`` matched, in one pass: that pattern took
    time cubic in the length of ``'  …  <'`` (a lazy group before ``\\s*``)."""
    stripped = value.strip()
    if stripped.endswith(">") and stripped.count("<") == 1 and stripped.count(">") == 1:
        open_at = stripped.index("<")
        inner = stripped[open_at + 1 : -1]
        if inner:
            return stripped[:open_at].strip().strip('"'), inner.strip()
    return "", stripped


@lru_cache(maxsize=4096)
def parse_mailbox(value: str) -> tuple[str, str]:
    """``'Name <a@b.c>'`` or ``'a@b.c'`` → (name, address); raises ValueError with a reason.

    Refuses more than 998 characters before looking inside (see the module docstring).
    Pure, so cached: a message's addresses are checked when it is validated and again
    when it is composed, and notification mail repeats the same few addresses (a refusal
    raises, so it is never kept)."""
    if len(value) > MAX_MAILBOX_CHARS:
        # the value itself is not repeated: it may be megabytes
        raise ValueError(
            f"an address is at most {MAX_MAILBOX_CHARS} characters with its display name "
            f"(this one has {len(value)})"
        )
    name, addr = _split_mailbox(value)
    reason = check_addr_spec(addr)
    if reason:
        raise ValueError(f"'{value}' {reason}")
    if name:
        bad = check_single_line(name)
        if bad or any(c in name for c in '@()<>[];:"\\'):
            raise ValueError(
                f"the display name in '{value}' {bad or 'has characters that are not allowed'}"
            )
        if len(name) > MAX_DISPLAY_NAME_CHARS:
            raise ValueError(
                f"the display name in '{value}' must be at most {MAX_DISPLAY_NAME_CHARS} characters"
            )
    if not addr.isascii():
        # a non-ASCII domain travels as its IDNA A-label (no SMTPUTF8 needed for it);
        # an invalid one is refused here, at validation, not when the message is sent
        addr = ascii_domain(addr)
    return name, addr
