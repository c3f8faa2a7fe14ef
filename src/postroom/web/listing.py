"""Filters and paging of the log pages (outbox, actions), read from a GET form (pure).

The filter forms are plain GET forms, so every value arrives as text; these helpers turn it
into what the services take and say in words what is wrong with a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from postroom.timebounds import parse_when

__all__ = ["DEFAULT_LIMIT", "LIMITS", "parse_limit", "parse_when", "query_string", "shorten"]

#: the page sizes offered; anything else in a URL falls back to the default
LIMITS = (25, 50, 100, 200)
DEFAULT_LIMIT = 50


def parse_limit(raw: str) -> int:
    """A page size from ``?limit=``: one of :data:`LIMITS`, else the default."""
    try:
        value = int(raw)
    except ValueError:
        return DEFAULT_LIMIT
    return value if value in LIMITS else DEFAULT_LIMIT


def query_string(values: Mapping[str, str | int | None], /, **changes: str | int | None) -> str:
    """``?a=1&b=2`` of the non-empty values (after ``changes``); ``""`` when all are empty."""
    merged = {**values, **changes}
    kept = {k: str(v) for k, v in merged.items() if v not in (None, "")}
    return "?" + urlencode(kept) if kept else ""


def shorten(text: str | None, limit: int = 90) -> str:
    """One line of at most ``limit`` characters, cut at a word where possible."""
    if not text:
        return ""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:—-") + "…"
