"""Which subscriptions an event reaches (pure): event glob, process glob, data filter."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

__all__ = ["DEFAULT_TEMPLATES", "default_template", "filter_matches", "lookup", "matches"]

#: the template a subscription gets when it names none, by event family (``run.*``)
DEFAULT_TEMPLATES = {"run": "run_finished", "alert": "alert"}
_MISSING = object()


def default_template(event_pattern: str, *, digest: bool) -> str | None:
    """The built-in template for ``event_pattern`` (a summary for digests), else None."""
    if digest:
        return "scheduled_summary"
    return DEFAULT_TEMPLATES.get(event_pattern.split(".", 1)[0])


def lookup(data: Mapping[str, Any], path: str) -> Any:
    """``data['a']['b']`` for ``'a.b'``; a key containing the whole path wins."""
    if path in data:
        return data[path]
    value: Any = data
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _norm(value: Any) -> str:
    # Filters come from JSON, YAML or the command line: 3, "3" and 3.0 must compare alike.
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True)


def filter_matches(rules: Mapping[str, Sequence[Any]] | None, data: Mapping[str, Any]) -> bool:
    """True when, for every rule ``field: [allowed…]``, the data's field is one of them.

    A field missing from the data matches no rule. Fields may be dotted (``counts.failed``).
    """
    for path, allowed in (rules or {}).items():
        value = lookup(data, path)
        if value is _MISSING:
            return False
        values = value if isinstance(value, list) else [value]
        wanted = {_norm(a) for a in allowed}
        if not any(_norm(v) in wanted for v in values):
            return False
    return True


def matches(
    *,
    event_pattern: str,
    process_pattern: str | None,
    rules: Mapping[str, Sequence[Any]] | None,
    event: str,
    process: str | None,
    data: Mapping[str, Any],
) -> bool:
    """Does an event reach a subscription? Globs (``run.*``); process names ignore case."""
    if not fnmatchcase(event, event_pattern):
        return False
    if process_pattern is not None:
        if process is None or not fnmatchcase(process.casefold(), process_pattern.casefold()):
            return False
    return filter_matches(rules, data)
