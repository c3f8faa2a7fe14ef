"""Replies that decide actions: the proof a reply must carry, and what is recorded (pure).

``From`` proves nothing (anyone can write any address there) and the action id is in
every request's subject. So each recipient's request mail names a reply address that
only that recipient was given: the request's mailbox, plus-addressed with a random token
(``approvals+act-<token>@example.com``; the server delivers it to ``approvals@…``). A
reply decides only when it was sent to such an address — the token says which request
and which recipient — arrived on the mailbox the request was sent from, comes ``From``
that recipient, and the receiving server's ``Authentication-Results`` do not say DMARC
failed. That verdict is recorded with the decision.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

__all__ = [
    "ReplyRead",
    "Verdict",
    "auth_verdict",
    "new_reply_token",
    "reply_address",
    "token_hash",
    "tokens_in",
]

_TAG = "act-"
_TOKEN = re.compile(r"\+(?:[^@\s<>]*\+)?act-([0-9a-f]{32})@", re.I)
_METHOD = re.compile(r"\b(dmarc|dkim|spf|arc)\s*=\s*([a-z]+)", re.I)
#: headers that carry the address a message was delivered to (besides To and Cc)
DELIVERY_HEADERS = ("delivered-to", "x-original-to", "envelope-to")


class ReplyRead(BaseModel):
    """A reply to an action request, decided or refused, as the action's status shows it."""

    received_at: datetime
    inbound_id: int | None
    from_address: str | None
    outcome: str  # decided | refused | late
    reason: str | None
    authentication: str


@dataclass(frozen=True)
class Verdict:
    """What the receiving server's ``Authentication-Results`` say; ``text`` is recorded."""

    text: str
    dmarc_failed: bool


def new_reply_token() -> str:
    return secrets.token_hex(16)


def token_hash(token: str) -> str:
    """What is stored of a reply token (the token itself only travels in the mail)."""
    return hashlib.sha256(token.lower().encode("ascii")).hexdigest()


def reply_address(mailbox: str, token: str) -> str:
    """``box@domain`` → ``box+act-<token>@domain``."""
    local, _, domain = mailbox.rpartition("@")
    return f"{local}+{_TAG}{token}@{domain}"


def tokens_in(addresses: Iterable[str], *, limit: int = 20) -> list[str]:
    """Reply tokens in the addresses a message was sent or delivered to (lowercase)."""
    found: list[str] = []
    for address in addresses:
        for match in _TOKEN.finditer(address):
            token = match.group(1).lower()
            if token not in found:
                found.append(token)
        if len(found) >= limit:
            break
    return found[:limit]


def auth_verdict(headers: Sequence[tuple[str, str]]) -> Verdict:
    """The topmost ``Authentication-Results`` header: the one the receiving server added
    last (lower ones may come from the sender and prove nothing)."""
    for name, value in headers:
        if name.strip().lower() != "authentication-results":
            continue
        flat = " ".join(value.split())
        server = flat.split(";", 1)[0].strip()
        results = [f"{m.group(1).lower()}={m.group(2).lower()}" for m in _METHOD.finditer(flat)]
        shown = " ".join(dict.fromkeys(results)) or "no results"
        return Verdict(f"{server[:100]}: {shown}"[:300], "dmarc=fail" in results)
    return Verdict("none: the receiving server added no Authentication-Results header", False)
