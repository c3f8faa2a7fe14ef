"""Jinja2 templates of the web UI, loaded from the package, autoescaped."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from postroom.web.forms import input_id

__all__ = ["STATIC_FILES", "Templates", "ago", "duration", "read_static", "relative"]

#: The static files the UI serves, with their content types. Nothing else is served.
STATIC_FILES = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def read_static(name: str) -> bytes:
    """The bytes of one vendored static file."""
    return resources.files("postroom.web").joinpath("static", name).read_bytes()


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """'3 min ago', 'yesterday'… for a UTC datetime; '—' for None."""
    if value is None:
        return "—"
    now = now or datetime.now(UTC)
    seconds = (now - value).total_seconds()
    if seconds < 0:
        return "just now" if seconds > -60 else value.strftime("%Y-%m-%d %H:%M UTC")
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    if seconds < 2 * 86400:
        return "yesterday"
    if seconds < 30 * 86400:
        return f"{int(seconds // 86400)} days ago"
    return value.strftime("%Y-%m-%d")


def relative(value: datetime | None, now: datetime | None = None) -> str:
    """Like :func:`ago`, and 'in 5 min', 'in 3 h'… for a time still to come."""
    if value is None:
        return "—"
    now = now or datetime.now(UTC)
    seconds = (value - now).total_seconds()
    if seconds <= 0:
        return ago(value, now)
    if seconds < 60:
        return "in less than a minute"
    # rounded to the nearest unit: a retry due in 1 h 59 min is "in 2 h", not "in 1 h"
    if seconds < 3570:
        return f"in {round(seconds / 60)} min"
    if seconds < 84600:
        return f"in {round(seconds / 3600)} h"
    if seconds < 30 * 86400:
        days = round(seconds / 86400)
        return f"in {days} day{'s' if days != 1 else ''}"
    return value.strftime("%Y-%m-%d")


def utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def duration(ms: float | None) -> str:
    """A step's time for people: '12 ms', '1.4 s'."""
    if ms is None:
        return ""
    if ms < 1:
        return "<1 ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.1f} s"


def _json_script(value: Any) -> Markup:
    """JSON safe to put inside a <script type="application/json"> element."""
    text = json.dumps(value, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - every markup character is escaped above


def _code_spans(value: str) -> Markup:
    """postroom's messages mark commands with backticks (they also go to terminals and
    logs); on a page, `x` becomes <code>x</code>. Everything else is escaped."""
    parts = str(value).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: show the text as it is
        return Markup.escape(value)
    out = [
        f"<code>{escape(part)}</code>" if i % 2 else str(escape(part))
        for i, part in enumerate(parts)
    ]
    return Markup("".join(out))  # noqa: S704 - every part is escaped above


class Templates:
    """The UI's templates; ``render(name, **context)`` returns HTML."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("postroom.web", "templates"),
            autoescape=select_autoescape(["html"], default=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            ago=ago,
            relative=relative,
            utc=utc,
            duration=duration,
            json_script=_json_script,
            code_spans=_code_spans,
        )
        versions = {
            name: hashlib.sha256(read_static(name)).hexdigest()[:10] for name in STATIC_FILES
        }
        self.env.globals["input_id"] = input_id
        self.env.globals["static"] = lambda name: f"/static/{name}?v={versions[name]}"

    def render(self, name: str, /, **context: Any) -> str:
        return self.env.get_template(name).render(**context)
