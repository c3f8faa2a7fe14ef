"""Rendering templates in a sandbox: subject, HTML (escaped, CSS inlined) and text (pure).

Template authors are administrators, not code owners. Templates therefore run in
Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`: no attribute starting
with ``_``, no unsafe callables, no mutation of the data; and within limits of size,
time and memory that hold while they compile and render (:mod:`postroom.notify.sandbox`).
Every failure becomes a :class:`TemplateError` naming the template, the part and the line
(and, for a limit, the setting that sets it) — never a traceback.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import css_inline
from jinja2 import FunctionLoader, StrictUndefined, Template
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.exceptions import SecurityError, TemplateNotFound, TemplateSyntaxError
from pydantic import BaseModel, Field

from postroom.errors import PostroomError
from postroom.notify.builtin_templates import LAYOUTS, layout_source
from postroom.notify.plaintext import html_to_text
from postroom.notify.sandbox import (
    DEFAULT_LIMITS,
    SETTING,
    LimitExceeded,
    Sandbox,
    TemplateLimits,
    compiling,
    rendering,
    tag_count,
)

__all__ = [
    "Part",
    "Rendered",
    "TemplateError",
    "TemplateLimits",
    "TemplateSource",
    "render",
    "render_part",
]

MAX_SUBJECT_CHARS = 200
_SPACES = re.compile(r"\s+")


class Part(StrEnum):
    SUBJECT = "subject"
    HTML = "html"
    TEXT = "text"


class TemplateError(PostroomError):
    """A template could not be compiled or rendered; says which template, part and line."""

    code = "template_error"

    def __init__(
        self,
        template: str,
        part: str,
        message: str,
        line: int | None = None,
        *,
        limit: str | None = None,
    ) -> None:
        where = f"{part}, line {line}" if line else part
        super().__init__(f"Template '{template}' ({where}): {message}")
        self.template = template
        self.part = part
        self.line = line
        self.reason = message
        #: the setting (environment variable) of the limit the template went past, if any
        self.limit = limit


@dataclass(frozen=True)
class TemplateSource:
    """The parts of one template version, as stored."""

    name: str
    subject: str
    html: str | None
    text: str | None


class Rendered(BaseModel):
    """A rendered template: what goes into a message."""

    subject: str
    html: str | None
    text: str
    headers: dict[str, str] = Field(default_factory=dict)


class _Undefined(StrictUndefined):
    """A missing value fails when printed or iterated (a typo must not send half a mail),
    but may be tested: ``{% if link %}`` is how templates handle optional data."""

    # jinja2 types the parent's as always raising; this one answers instead
    def __bool__(self) -> bool:  # type: ignore[override]
        return False


def _duration(value: Any) -> str:
    """Seconds as people read them: ``850 ms``, ``42 s``, ``3 min 12 s``, ``2 h 05 min``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    seconds = float(value)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def _datetime(value: Any, zone: str = "UTC", fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    """An ISO 8601 time (or datetime) shown in ``zone``; other values pass through."""
    when = value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(when, datetime):
        return str(value)
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SecurityError(f"unknown time zone '{zone}'") from None
    if when.tzinfo is not None:
        when = when.astimezone(tz)
    return when.strftime(fmt)


@functools.cache
def _environment() -> Sandbox:
    env = Sandbox(
        loader=FunctionLoader(_load_layout),
        undefined=_Undefined,
        autoescape=lambda name: bool(name and name.endswith(".html")),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["duration"] = _duration
    env.filters["datetime"] = _datetime
    return env


def _load_layout(name: str) -> tuple[str, str, Any] | None:
    source = layout_source(name)
    if source is None:
        return None
    return source, name, lambda: True


@functools.lru_cache(maxsize=512)
def _compile(filename: str, source: str, limits: TemplateLimits) -> Template:
    env = _environment()
    with compiling(limits):
        code = env.compile(source, name=filename, filename=filename)
    return env.template_class.from_code(env, code, env.make_globals(None))


def _located(exc: BaseException, names: set[str]) -> int | None:
    """The template line of the innermost frame that ran template code (Jinja maps them)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in names:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _explain(exc: BaseException) -> str:
    if isinstance(exc, LimitExceeded):
        return f"{exc.what}; the limit is set by {exc.limit}"
    if isinstance(exc, SecurityError):
        return f"not allowed in templates: {exc}"
    if isinstance(exc, TemplateNotFound):
        return (
            f"there is no template '{exc.name}' to load; templates can extend or include only "
            + " and ".join(LAYOUTS)
        )
    if isinstance(exc, TemplateSyntaxError):
        return f"syntax error: {exc.message}"
    if isinstance(exc, JinjaTemplateError) and exc.message:
        return exc.message.replace("jinja2.exceptions.", "")
    return f"{type(exc).__name__}: {exc}"


def _generate(template: Template, context: Mapping[str, Any], limits: TemplateLimits) -> str:
    chunks: list[str] = []
    size = 0
    with rendering(limits):
        stream = template.generate(dict(context))
        try:
            for chunk in stream:
                size += len(chunk)
                if size > limits.max_output_chars:
                    raise LimitExceeded(
                        f"the output is larger than {limits.max_output_chars:,} characters",
                        "max_output_chars",
                    )
                chunks.append(chunk)
        finally:
            if isinstance(stream, Generator):  # stop a template abandoned mid-way
                stream.close()
    return "".join(chunks)


def _check_source(name: str, part: Part, source: str, limits: TemplateLimits) -> None:
    """Refuse a part too large to compile quickly, before Jinja reads it."""
    if len(source) > limits.max_source_chars:
        raise TemplateError(
            name, part,
            f"the {part.value} part has {len(source):,} characters, more than "
            f"{limits.max_source_chars:,}; the limit is set by {SETTING['max_source_chars']}",
            limit=SETTING["max_source_chars"],
        )  # fmt: skip
    tags = tag_count(source)
    if tags > limits.max_tags:
        raise TemplateError(
            name, part,
            f"the {part.value} part has {tags:,} tags ({{{{, {{% and {{#), more than "
            f"{limits.max_tags:,}; the limit is set by {SETTING['max_tags']}",
            limit=SETTING["max_tags"],
        )  # fmt: skip


def render_part(
    name: str,
    part: Part,
    source: str,
    context: Mapping[str, Any],
    limits: TemplateLimits = DEFAULT_LIMITS,
) -> str:
    """Compile and render one part; raises TemplateError with the line at fault."""
    filename = f"{name}.{'txt' if part is Part.TEXT else part.value}"
    _check_source(name, part, source, limits)
    try:
        return _generate(_compile(filename, source, limits), context, limits)
    except TemplateSyntaxError as exc:
        raise TemplateError(name, part, _explain(exc), exc.lineno) from None
    # The one boundary where code written by template authors runs: whatever it raises
    # (UndefinedError, SecurityError, ZeroDivisionError…) is their mistake, reported as such.
    except Exception as exc:  # noqa: BLE001
        line = _located(exc, {filename, *LAYOUTS})
        limit = exc.limit if isinstance(exc, LimitExceeded) else None
        raise TemplateError(name, part, _explain(exc), line, limit=limit) from None


@functools.cache
def _inliner() -> css_inline.CSSInliner:
    # Never fetch stylesheets: a <link> in an admin's template must not make postroom
    # open connections (SSRF) or read local files; @media rules stay for mobile clients.
    return css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)


def _inline_css(name: str, html: str) -> str:
    try:
        return _inliner().inline(html)
    except css_inline.InlineError as exc:
        raise TemplateError(name, Part.HTML, f"the CSS cannot be inlined: {exc}") from None


def render(
    source: TemplateSource, data: Mapping[str, Any], *, limits: TemplateLimits = DEFAULT_LIMITS
) -> Rendered:
    """Render every part of ``source`` with ``data``.

    The subject becomes one line (whitespace collapsed, at most 200 characters). The HTML
    is autoescaped and its ``<style>`` rules are inlined for mail clients. Without a text
    part, the text is generated from the HTML. Raises :class:`TemplateError`.
    """
    subject = _SPACES.sub(" ", render_part(source.name, Part.SUBJECT, source.subject, data, limits))
    subject = subject.strip()
    if not subject:
        raise TemplateError(source.name, Part.SUBJECT, "the subject is empty")
    if len(subject) > MAX_SUBJECT_CHARS:
        subject = subject[: MAX_SUBJECT_CHARS - 1].rstrip() + "…"
    html = None
    if source.html is not None:
        raw_html = render_part(source.name, Part.HTML, source.html, data, limits)
        html = _inline_css(source.name, raw_html)
    if source.text is not None:
        text = render_part(source.name, Part.TEXT, source.text, data, limits)
    elif source.html is not None:
        text = html_to_text(raw_html)
    else:
        raise TemplateError(source.name, Part.TEXT, "the template has neither html nor text")
    return Rendered(subject=subject, html=html, text=text)
