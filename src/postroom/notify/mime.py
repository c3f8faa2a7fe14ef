"""A small MIME writer for the messages postroom composes (pure).

Composition with ``email.message.EmailMessage`` costs ≈ 1 ms per message, more than
sending it (see docs/decisions/0003-delivery-speed.md). Postroom's messages have one
shape — text and/or HTML, optional attachments, headers already validated to be single
lines — so they are written directly: RFC 2047 encoded words for non-ASCII header text,
quoted-printable for non-ASCII or long-lined bodies, base64 for attachments, CRLF only.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from email.header import Header
from functools import lru_cache

__all__ = ["Part", "address_header", "encode_header", "render"]

_ATOM_PHRASE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ .]*$")
_LONG_LINE = 998


def encode_header(name: str, value: str) -> str:
    """``Name: value`` folded to RFC 5322 lines; non-ASCII as UTF-8 encoded words."""
    if value.isascii() and len(name) + 2 + len(value) <= 78:
        return f"{name}: {value}"
    encoded = Header(value, "utf-8" if not value.isascii() else "us-ascii", header_name=name)
    return f"{name}: {encoded.encode(linesep=chr(13) + chr(10), maxlinelen=78)}"


def _display_name(name: str) -> str:
    if not name:
        return ""
    if not name.isascii():
        return Header(name, "utf-8").encode(maxlinelen=10_000)
    if _ATOM_PHRASE.match(name) and not name.startswith(".") and ".." not in name:
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def address_header(name: str, mailboxes: list[tuple[str, str]]) -> str:
    """``To: Name <a@b.c>, d@e.f`` with one mailbox per folded line when long."""
    parts = []
    for display, addr in mailboxes:
        shown = _display_name(display)
        parts.append(f"{shown} <{addr}>" if shown else addr)
    line = f"{name}: " + ", ".join(parts)
    if len(line) <= 78:
        return line
    return f"{name}: " + ",\r\n ".join(parts)


def _text_part(body: str, subtype: str) -> list[str]:
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    if body.endswith("\n"):
        body = body[:-1]  # the part's own line end follows
    lines = body.split("\n")
    if body.isascii() and max(map(len, lines)) <= _LONG_LINE:
        return [
            f'Content-Type: text/{subtype}; charset="us-ascii"',
            "Content-Transfer-Encoding: 7bit",
            "",
            "\r\n".join(lines),
        ]
    encoded = binascii.b2a_qp(body.encode("utf-8"), istext=True).decode("ascii")
    return [
        f'Content-Type: text/{subtype}; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
        "",
        encoded.replace("\n", "\r\n"),
    ]


class Part:
    """An attachment: bytes, a content type and a file name."""

    __slots__ = ("content", "content_type", "filename")

    def __init__(self, content: bytes, content_type: str, filename: str) -> None:
        self.content, self.content_type, self.filename = content, content_type, filename

    def lines(self) -> list[str]:
        disposition = encode_header(
            "Content-Disposition", f'attachment; filename="{self.filename}"'
        )
        if not self.filename.isascii():
            disposition = "Content-Disposition: attachment; filename*=utf-8''" + "".join(
                c if c.isalnum() and c.isascii() else "".join(f"%{b:02X}" for b in c.encode())
                for c in self.filename
            )
        data = base64.encodebytes(self.content).decode("ascii").replace("\n", "\r\n").rstrip("\r\n")
        return [
            f"Content-Type: {self.content_type}",
            "Content-Transfer-Encoding: base64",
            disposition,
            "",
            data,
        ]


def _multipart(subtype: str, parts: list[list[str]]) -> list[str]:
    boundary = f"==postroom_{secrets.token_hex(12)}=="
    out = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"', "", ""]
    body: list[str] = []
    for part in parts:
        body += [f"--{boundary}", *part]
    body += [f"--{boundary}--", ""]
    out[-1] = "\r\n".join(body)
    return out


def _alternatives(text: str | None, html: str | None) -> list[str]:
    alternatives = []
    if text is not None:
        alternatives.append(_text_part(text, "plain"))
    if html is not None:
        alternatives.append(_text_part(html, "html"))
    return alternatives[0] if len(alternatives) == 1 else _multipart("alternative", alternatives)


def _encoded(lines: list[str]) -> bytes:
    """``lines`` as CRLF-ended ASCII bytes, after checking that every CR and LF in them is
    part of a CRLF pair.

    Defence in depth: the validation before composing should make a bare one impossible.
    """
    data = ("\r\n".join(lines) + "\r\n").encode("ascii")
    if not data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r"):
        raise ValueError("composed message has a bare CR or LF")
    return data


@lru_cache(maxsize=256)
def _encoded_body(text: str | None, html: str | None) -> bytes:
    """The MIME body of text and/or HTML, encoded and checked: computed once per distinct
    body. Notifications from one template often share theirs word for word, and encoding
    and checking 2 KB cost more than the rest of composing a message."""
    return _encoded(_alternatives(text, html))


_CACHED_BODY_CHARS = 64 * 1024  # larger bodies are encoded each time, not kept


def render(
    headers: list[str], text: str | None, html: str | None, attachments: list[Part]
) -> bytes:
    """The complete message: ``headers`` (already encoded lines), then the MIME body.

    Raises ValueError when the result would hold a bare CR or LF (it cannot, by
    construction; this is the last check)."""
    head = _encoded([*headers, "MIME-Version: 1.0"])
    if attachments:
        parts = _multipart("mixed", [_alternatives(text, html), *(a.lines() for a in attachments)])
        return head + _encoded(parts)
    if len(text or "") + len(html or "") <= _CACHED_BODY_CHARS:
        return head + _encoded_body(text, html)
    return head + _encoded(_alternatives(text, html))
