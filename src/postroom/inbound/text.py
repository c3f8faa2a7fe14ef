"""Text from mail made storable (pure).

Mail is not bound to be valid text: the email package turns undecodable bytes into lone
surrogates, and a body may contain NUL. PostgreSQL stores neither (SQLite would, which
hides the problem until production), so every string from a message passes :func:`clean`.
"""

from __future__ import annotations

__all__ = ["clean"]


def clean(value: str | None, limit: int | None = None) -> str | None:
    """``value`` without NUL and lone surrogates, cut to ``limit`` characters."""
    if value is None:
        return None
    text = value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    return text[:limit] if limit is not None else text
