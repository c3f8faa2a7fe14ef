"""JSON from callers, parsed with a bound on nesting (pure: no I/O).

``json.loads`` recurses once per level: a body of 3,000 ``[`` raises ``RecursionError``
(a 500 and, under uvicorn, a dropped connection), and a few hundred levels parse but make
every later recursive walk (validation, ``json.dumps``, templates) a risk. No request
postroom takes needs more than a handful of levels, so anything deeper than
:data:`MAX_DEPTH` is refused as bad input before it reaches a service.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_DEPTH", "JsonTooDeep", "loads", "too_deep"]

#: The deepest nesting of arrays and objects accepted (``[[1]]`` is 2 levels deep).
MAX_DEPTH = 32


class JsonTooDeep(ValueError):
    """The JSON nests arrays and objects deeper than the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The request body nests arrays and objects more than {limit} levels deep; "
            "flatten the data."
        )
        self.limit = limit


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` (parsed JSON) nests lists and dicts more than ``limit`` levels.

    Iterative, so it cannot itself run out of stack.
    """
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def loads(data: bytes | str, *, limit: int = MAX_DEPTH) -> Any:
    """``json.loads(data)``, refusing nesting deeper than ``limit``.

    Raises:
        JsonTooDeep: nested deeper than ``limit`` (a ValueError).
        ValueError: not JSON, or bytes that are not UTF-8/16/32 (``json.JSONDecodeError``,
            ``UnicodeDecodeError``).
    """
    try:
        value = json.loads(data)
    except RecursionError:
        raise JsonTooDeep(limit) from None
    if too_deep(value, limit):
        raise JsonTooDeep(limit)
    return value
