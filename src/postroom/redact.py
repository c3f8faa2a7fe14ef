"""Taking a secret (or a caller's value) out of text we show: pure, no I/O.

A plain ``text.replace(secret, "***")`` fails both ways: a one-letter password turns every
"a" of a server's message into stars, and a secret the server echoed in another form (a
quoted string with backslash escapes) stays readable. :func:`redact` judges each
occurrence by where it stands:

- **quoted** (``'…'`` or ``"…"`` around it): always redacted: that is how servers and
  postroom's own messages quote a value;
- **standalone** (not glued to letters or digits on a side where the secret has one):
  redacted when ``standalone`` is set (a server echoing a command's argument), or when the
  secret is long;
- **inside a word**: redacted only when the secret is long (``long_from`` characters or
  more), where a chance match is not credible.

Each occurrence is replaced whole, never a part of it.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["MASK", "redact", "redact_all"]

MASK = "********"
_QUOTES = "'\""


def _forms(secret: str) -> list[str]:
    """The secret as written, and as an IMAP/JSON quoted string writes it (``\\`` escapes)."""
    escaped = secret.replace("\\", "\\\\").replace('"', '\\"')
    return [escaped, secret] if escaped != secret else [secret]


def _glued(text: str, i: int, j: int, form: str) -> bool:
    """Whether ``text[i:j]`` continues a word: a letter or digit on a side where ``form``
    also has one (``a`` in ``bad``; but ``a`` in ``(a)`` or ``user a`` stands alone)."""
    before = i > 0 and text[i - 1].isalnum() and form[0].isalnum()
    after = j < len(text) and text[j].isalnum() and form[-1].isalnum()
    return before or after


def redact(
    text: str,
    secret: str,
    *,
    mask: str = MASK,
    standalone: bool = True,
    long_from: int = 8,
) -> str:
    """``text`` with each occurrence of ``secret`` that can be it replaced by ``mask``.

    See the module docstring for which occurrences count. An empty secret changes nothing.
    """
    if not secret or not text:
        return text
    for form in _forms(secret):
        long = len(form) >= long_from
        out: list[str] = []
        start = 0
        while (i := text.find(form, start)) != -1:
            j = i + len(form)
            quoted = 0 < i and j < len(text) and text[i - 1] == text[j] and text[j] in _QUOTES
            glued = _glued(text, i, j, form)
            if long or quoted or (standalone and not glued):
                out += [text[start:i], mask]
                start = j
            else:
                out.append(text[start : i + 1])
                start = i + 1
        out.append(text[start:])
        text = "".join(out)
    return text


def redact_all(
    text: str,
    secrets: Iterable[str],
    *,
    mask: str = MASK,
    standalone: bool = True,
    long_from: int = 8,
) -> str:
    """:func:`redact` for each of ``secrets``, longest first (so a secret that contains
    another is replaced whole)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = redact(text, secret, mask=mask, standalone=standalone, long_from=long_from)
    return text
