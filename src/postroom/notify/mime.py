"""A small MIME writer for the messages postroom composes (pure).

Composition with ``email.message.EmailMessage`` costs ≈ 1 ms per message, more than
sending it (see docs/decisions/0003-delivery-speed.md). Postroom's messages have one
shape — text and/or HTML, optional attachments, headers already validated to be single
lines — so they are written directly: RFC 2047 encoded words for non-ASCII header text,
quoted-printable for non-ASCII or long-lined bodies, base64 for attachments, CRLF only.

No line it writes is longer than RFC 5322's 998 octets, whatever it is given: header
values are folded at spaces (78 columns where the words allow), a word too long for one
line becomes encoded words, a display name is folded between its encoded words, and an
attachment's file name is a quoted string only when that is safe and short — otherwise
RFC 2231's ``filename*0*=utf-8''…`` continuations, so that no character of a name can end
the parameter and start another.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from email.header import Header
from functools import lru_cache

__all__ = [
    "LONG_LINE",
    "Part",
    "address_header",
    "content_type_reason",
    "encode_header",
    "longest_word_reason",
    "render",
]

_ATOM_PHRASE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ .]*$")
LONG_LINE = 998  # RFC 5322 2.1.1: octets in a line, without its CRLF
_FOLD = 78  # RFC 5322 2.1.1: what a line SHOULD stay within
_CRLF = "\r\n"


def _folded(prefix: str, value: str) -> str | None:
    """``prefix + value`` folded before spaces to lines of 78 where the words allow;
    None when a word still makes a line longer than 998. Unfolding (removing each CRLF)
    gives back ``prefix + value`` exactly."""
    lines, line = [], prefix
    for index, word in enumerate(value.split(" ")):
        if index == 0:
            line += word
        elif word and len(line) + 1 + len(word) > _FOLD and line.strip():
            lines.append(line)
            line = " " + word
        else:
            line += " " + word
    lines.append(line)
    if max(map(len, lines)) > LONG_LINE:
        return None
    return _CRLF.join(lines)


def _encoded_words(text: str, first_line_used: int = 0) -> str:
    """``text`` as UTF-8 encoded words (RFC 2047), folded between words."""
    encoded = Header(text, "utf-8", header_name="x" * max(0, first_line_used - 2))
    return encoded.encode(linesep=_CRLF, maxlinelen=_FOLD)


def encode_header(name: str, value: str) -> str:
    """``Name: value`` folded to RFC 5322 lines; non-ASCII, or a word too long for one
    line, as UTF-8 encoded words (so only for unstructured headers: Subject, X-…)."""
    if value.isascii():
        if len(name) + 2 + len(value) <= _FOLD:
            return f"{name}: {value}"
        folded = _folded(f"{name}: ", value)
        if folded is not None:
            return folded
    return f"{name}: {_encoded_words(value, len(name) + 2)}"


def longest_word_reason(name: str, value: str) -> str | None:
    """Why ``Name: value`` cannot be folded into lines of 998 without encoding it (which a
    structured header such as List-Unsubscribe does not allow), or None."""
    longest = max(map(len, value.split(" ")), default=0)
    if len(name) + 2 + longest > LONG_LINE:
        return (
            f"has {longest} characters without a space; a header line holds at most "
            f"{LONG_LINE} octets with its name, so put spaces in it or shorten it"
        )
    return None


def _display_name(name: str) -> str:
    if not name:
        return ""
    if not name.isascii():
        # one encoded word per line: a 256-character name is ≈ 1,400 octets encoded
        return _encoded_words(name)
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
    if body.isascii() and max(map(len, lines)) <= LONG_LINE:
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


# RFC 2045 token characters: printable ASCII except space and tspecials
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
_QUOTED = r'"(?:[^"\\\x00-\x1f\x7f]|\\[ -~])*"'
_MEDIA_TYPE = re.compile(rf"({_TOKEN})/({_TOKEN})", re.ASCII)
_PARAMETER = re.compile(
    rf"[ \t]*;[ \t]*({_TOKEN})[ \t]*=[ \t]*({_TOKEN}|{_QUOTED})[ \t]*", re.ASCII
)
MAX_CONTENT_TYPE_CHARS = 200
MAX_CONTENT_TYPE_PARAMETERS = 8


def content_type_reason(value: str) -> str | None:
    """Why ``value`` is not a content type an attachment may carry, or None. Accepted:
    ``type/subtype`` with up to 8 ``; name=value`` parameters (RFC 2045 tokens or quoted
    strings), ASCII, at most 200 characters; not ``multipart/*`` or ``message/*``, whose
    bodies must not be base64 (RFC 2046)."""
    if len(value) > MAX_CONTENT_TYPE_CHARS:
        return f"must be at most {MAX_CONTENT_TYPE_CHARS} characters"
    media = _MEDIA_TYPE.match(value)
    if media is None:
        return "must be a media type such as application/pdf or text/plain; charset=utf-8"
    if media[1].lower() in ("multipart", "message"):
        return f"cannot be {media[1].lower()}/*: attach the file as application/octet-stream"
    at, names = media.end(), []
    while at < len(value):
        parameter = _PARAMETER.match(value, at)
        if parameter is None:
            return (
                "has a parameter that is not name=value (a token or a quoted string), "
                "as in text/plain; charset=utf-8"
            )
        names.append(parameter[1].lower())
        at = parameter.end()
    if len(names) > MAX_CONTENT_TYPE_PARAMETERS:
        return f"has more than {MAX_CONTENT_TYPE_PARAMETERS} parameters"
    if len(set(names)) != len(names):
        return "names a parameter twice"
    return None


# RFC 2231 attribute-char: token characters except "*", "'" and "%"
_ATTRIBUTE_CHARS = frozenset(
    "!#$&+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_QUOTABLE = re.compile(r"[ !#-\[\]-~]*")  # printable ASCII but '"' and '\\'
_SEGMENT = 60  # characters of an encoded file name per continuation line


def _disposition(filename: str) -> str:
    """``Content-Disposition: attachment; filename=…`` for exactly ``filename``."""
    simple = f'Content-Disposition: attachment; filename="{filename}"'
    if _QUOTABLE.fullmatch(filename) and len(simple) <= _FOLD:
        return simple
    encoded = [
        chr(b) if chr(b) in _ATTRIBUTE_CHARS else f"%{b:02X}" for b in filename.encode("utf-8")
    ]
    segments, current = [], "utf-8''"
    for piece in encoded:  # a %XX triple never spans two segments
        if len(current) + len(piece) > _SEGMENT:
            segments.append(current)
            current = ""
        current += piece
    segments.append(current)
    if len(segments) == 1:
        return f"Content-Disposition: attachment;{_CRLF} filename*={segments[0]}"
    return "Content-Disposition: attachment;" + ";".join(
        f"{_CRLF} filename*{i}*={segment}" for i, segment in enumerate(segments)
    )


class Part:
    """An attachment: bytes, a content type (validated by :func:`content_type_reason`)
    and a file name (one line, any characters)."""

    __slots__ = ("content", "content_type", "filename")

    def __init__(self, content: bytes, content_type: str, filename: str) -> None:
        self.content, self.content_type, self.filename = content, content_type, filename

    def lines(self) -> list[str]:
        data = base64.encodebytes(self.content).decode("ascii").replace("\n", "\r\n").rstrip("\r\n")
        return [
            f"Content-Type: {self.content_type}",
            "Content-Transfer-Encoding: base64",
            _disposition(self.filename),
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


def _encoded(lines: list[str], charset: str = "ascii") -> bytes:
    """``lines`` as CRLF-ended ASCII bytes, after checking that every CR and LF in them is
    part of a CRLF pair. ``charset`` "utf-8" for the header section only: an address with
    a UTF-8 local part is raw UTF-8 there (RFC 6532; it is sent with SMTPUTF8).

    Defence in depth: the validation before composing should make a bare one impossible.
    """
    data = ("\r\n".join(lines) + "\r\n").encode(charset)
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
    head = _encoded([*headers, "MIME-Version: 1.0"], "utf-8")
    if max(map(len, head.split(b"\r\n"))) > LONG_LINE:
        raise ValueError(f"composed header line is longer than {LONG_LINE} octets")
    if attachments:
        parts = _multipart("mixed", [_alternatives(text, html), *(a.lines() for a in attachments)])
        return head + _encoded(parts)
    if len(text or "") + len(html or "") <= _CACHED_BODY_CHARS:
        return head + _encoded_body(text, html)
    return head + _encoded(_alternatives(text, html))
