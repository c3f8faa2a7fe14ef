"""The sandbox templates render in, and limits that hold *while* they render (pure).

Template authors are administrators, not code owners, and a template is code: Jinja2's
:class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` keeps it from reaching files,
private attributes or mutable data, but not from spending time and memory. Postroom bounds
both, each bound configurable (:class:`TemplateLimits`, from ``POSTROOM_TEMPLATE_*``):

- before compiling: the size of each part and its number of tags (Python's own ``compile``
  of the generated code holds the GIL: 9,000 tags took 1.6 s);
- while compiling: a deadline, checked on every Python call of Jinja's lexer, parser and
  code generator (a profile hook, set only for a compilation that is not cached);
- while rendering: a deadline checked at every iteration of every ``{% for %}`` and every
  call (templates are rewritten so that each loop's iterable passes through
  :func:`ticking`), so a loop that prints nothing stops on time; the process's resident
  memory, checked at most every millisecond on those ticks; and every operation that could
  build a huge value is checked *before* it runs: ``*``, ``+``, ``%`` and ``**``, the
  filters ``center``, ``indent``, ``format``, ``replace``, ``batch`` and ``slice``, the
  string methods ``center``, ``ljust``, ``rjust``, ``zfill``, ``expandtabs``, ``replace``,
  ``format`` and ``format_map``; ``~`` and the joins that make macro and block output are
  checked on the sizes of their parts.

Every limit broken raises :class:`LimitExceeded`, which names the setting to change.
"""

from __future__ import annotations

import functools
import os
import re
import string
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

__all__ = [
    "DEFAULT_LIMITS",
    "LimitExceeded",
    "Sandbox",
    "TemplateLimits",
    "compiling",
    "rendering",
    "tag_count",
    "ticking",
]


@dataclass(frozen=True)
class TemplateLimits:
    """Bounds on one template part; the defaults fit templates thirty times the size of
    the built-in ones (≤ 4 KB, ≤ 51 tags)."""

    max_source_chars: int = 64 * 1024
    max_tags: int = 2_000
    compile_timeout_s: float = 2.0
    max_output_chars: int = 2 * 1024 * 1024
    render_timeout_s: float = 5.0
    max_memory_mb: int = 256

    @classmethod
    def from_settings(cls, settings: Any) -> TemplateLimits:
        """The limits in ``settings`` (a :class:`postroom.settings.Settings`)."""
        return cls(
            max_source_chars=settings.template_max_source_chars,
            max_tags=settings.template_max_tags,
            compile_timeout_s=settings.template_compile_timeout_s,
            max_output_chars=settings.template_max_output_chars,
            render_timeout_s=settings.template_render_timeout_s,
            max_memory_mb=settings.template_max_memory_mb,
        )


DEFAULT_LIMITS = TemplateLimits()
#: the environment variable that sets each limit, named in every error
SETTING = {
    "max_source_chars": "POSTROOM_TEMPLATE_MAX_SOURCE_CHARS",
    "max_tags": "POSTROOM_TEMPLATE_MAX_TAGS",
    "compile_timeout_s": "POSTROOM_TEMPLATE_COMPILE_TIMEOUT_S",
    "max_output_chars": "POSTROOM_TEMPLATE_MAX_OUTPUT_CHARS",
    "render_timeout_s": "POSTROOM_TEMPLATE_RENDER_TIMEOUT_S",
    "max_memory_mb": "POSTROOM_TEMPLATE_MAX_MEMORY_MB",
}
#: integers beyond this many bits are refused (squaring 10**30000 repeatedly took seconds
#: in one C call, which no deadline interrupts)
MAX_INT_BITS = 100_000
#: counts that build a list entry by entry (batch, slice), as Jinja caps range()
MAX_COUNT = 100_000


class LimitExceeded(SecurityError):
    """A template went past one of its limits; ``limit`` is the setting to change."""

    def __init__(self, what: str, limit: str) -> None:
        super().__init__(f"{what} (limit: {SETTING[limit]})")
        self.what = what
        self.limit = SETTING[limit]


@dataclass
class _Budget:
    limits: TemplateLimits
    deadline: float
    rss_start: int
    next_memory_check: float


_BUDGET: ContextVar[_Budget | None] = ContextVar("postroom_template_budget", default=None)


def _limits() -> TemplateLimits:
    budget = _BUDGET.get()
    return budget.limits if budget is not None else DEFAULT_LIMITS


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int:
    """Resident memory of this process in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        return 0


@contextmanager
def rendering(limits: TemplateLimits) -> Iterator[None]:
    """Hold the template code run inside to ``limits`` (deadline, memory, sizes)."""
    now = time.monotonic()
    token = _BUDGET.set(_Budget(limits, now + limits.render_timeout_s, _rss(), now + 0.001))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def tick() -> None:
    """Stop the template when its time or memory is spent (called on every loop
    iteration and every call; ≈ 0.1 µs, reading memory at most once a millisecond)."""
    budget = _BUDGET.get()
    if budget is None:
        return
    now = time.monotonic()
    if now > budget.deadline:
        raise LimitExceeded(
            f"rendering took longer than {budget.limits.render_timeout_s:g} s", "render_timeout_s"
        )
    if now >= budget.next_memory_check:
        budget.next_memory_check = now + 0.001
        grown = _rss() - budget.rss_start
        if grown > budget.limits.max_memory_mb * 2**20:
            raise LimitExceeded(
                f"rendering used more than {budget.limits.max_memory_mb} MB of memory",
                "max_memory_mb",
            )


def ticking(iterable: Iterable[Any]) -> Iterator[Any]:
    """``iterable``, with :func:`tick` before each item: every ``{% for %}`` runs on it."""
    for item in iterable:
        tick()
        yield item


def _too_large(size: int) -> None:
    limit = _limits().max_output_chars
    if size > limit:
        raise LimitExceeded(
            f"this would build a value of {size:,} characters, more than {limit:,}",
            "max_output_chars",
        )


def sized(value: Any) -> Any:
    """``value`` (a ``~`` concatenation), refused when larger than the output limit."""
    if isinstance(value, str):
        _too_large(len(value))
    return value


def _concat(parts: Iterable[str]) -> str:
    """``"".join`` for macro, block and call output, checked on the parts' sizes first."""
    parts = parts if isinstance(parts, list) else list(parts)
    _too_large(sum(map(len, parts)))
    return "".join(parts)


def _width(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        _too_large(value)


# printf-style conversions: flags, then width and precision (or "*" from the arguments)
_PERCENT_SPEC = re.compile(r"%(?:\([^()]{0,200}\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?")
_DIGITS = re.compile(r"\d+")


def _check_percent(template: str, args: Any) -> None:
    """``template % args`` with no width or precision beyond the output limit."""
    for spec in _PERCENT_SPEC.finditer(template):
        for number in spec.groups():
            if number == "*":
                for arg in args if isinstance(args, tuple) else (args,):
                    _width(arg)
            elif number:
                _width(int(number[:12]))


def _check_format(template: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``template.format(...)`` with no width or precision beyond the output limit."""
    for _, _, spec, _ in string.Formatter().parse(template):
        if not spec:
            continue
        for number in _DIGITS.findall(spec):
            _width(int(number[:12]))
        if "{" in spec:  # a width given as an argument
            for arg in (*args, *kwargs.values()):
                _width(arg)


def _check_replace(value: str, old: Any, new: Any, count: Any = -1) -> None:
    if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        times = len(value) + 1 if not old else value.count(old)
        if isinstance(count, int) and count >= 0:
            times = min(times, count)
        _too_large(len(value) + times * (len(new) - len(old)))


def _check_str_method(value: str, name: str, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
    if name in ("center", "ljust", "rjust", "zfill"):
        _width(args[0] if args else kw.get("width"))
    elif name == "expandtabs":
        size = args[0] if args else kw.get("tabsize", 8)
        if isinstance(size, int):
            _too_large(len(value) + value.count("\t") * max(size, 0))
    elif name == "replace":
        _check_replace(value, *args[:3], **kw)


def _check_indent(value: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    lines = str(value).count("\n") + 1
    size = len(width) if isinstance(width, str) else width
    if isinstance(size, int):
        _width(size)
        _too_large(len(str(value)) + lines * size)


def _check_count(value: Any, count: Any = 1, *_: Any, **__: Any) -> None:
    if isinstance(count, int) and count > MAX_COUNT:
        raise SecurityError(f"a count of {count:,} is more than {MAX_COUNT:,} (as for range)")


_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": lambda value, width=80, *_, **__: _width(width),
    "indent": _check_indent,
    "format": lambda value, *args, **kw: _check_percent(str(value), kw or args),
    "replace": lambda value, old, new, count=None: _check_replace(
        str(value), old, new, -1 if count is None else count
    ),
    "batch": _check_count,
    "slice": _check_count,
}


def _checked_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    check = _FILTER_CHECKS[name]
    # filters marked pass_context/pass_eval_context/pass_environment take that first
    skip = 1 if getattr(original, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(original)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check(*args[skip:], **kwargs)
        return original(*args, **kwargs)

    return checked


class _Guard(NodeTransformer):
    """Rewrites a parsed template so that its loops tick and its ``~`` is sized."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(
            nodes.ImportedName(f"{__name__}.ticking", lineno=node.lineno),
            [node.iter], [], None, None, lineno=node.lineno,
        )  # fmt: skip
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(
            nodes.ImportedName(f"{__name__}.sized", lineno=node.lineno),
            [node], [], None, None, lineno=node.lineno,
        )  # fmt: skip


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with postroom's limits (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    concat = staticmethod(_concat)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.pop("lipsum", None)  # lipsum(n=10**9) would run in one call
        for name in _FILTER_CHECKS:
            self.filters[name] = _checked_filter(name, self.filters[name])

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        guarded = _Guard().visit(tree)
        assert isinstance(guarded, nodes.Template)  # a transformer keeps the root
        guarded.set_environment(self)
        return guarded

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        tick()
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int):
                    _too_large(len(seq) * max(count, 0))
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise SecurityError("the product is too large")
        elif operator == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                _too_large(len(left) + len(right))
        elif operator == "%":
            if isinstance(left, str):
                _check_percent(left, right)
        elif isinstance(left, int) and isinstance(right, int) and right > 0:  # "**"
            if abs(left) > 1 and (left.bit_length() - 1) * right > MAX_INT_BITS:
                raise SecurityError("the power is too large")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's sandboxed ``str.format``/``format_map``, with widths checked first."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template, by_map = value.__self__, value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> str:
            if by_map and args and hasattr(args[0], "values"):
                _check_format(template, (), dict(args[0]))
            else:
                _check_format(template, args, kwargs)
            return wrapped(*args, **kwargs)

        return checked

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        tick()
        bound_to = getattr(__obj, "__self__", None)
        if isinstance(bound_to, str):  # Markup too
            _check_str_method(bound_to, getattr(__obj, "__name__", ""), args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def tag_count(source: str) -> int:
    """Jinja tags in ``source``: ``{{``, ``{%`` and ``{#`` openings."""
    return source.count("{{") + source.count("{%") + source.count("{#")


@contextmanager
def compiling(limits: TemplateLimits) -> Iterator[None]:
    """Stop the Jinja compilation run inside when it takes longer than the limit: a
    profile hook checks the clock on each Python call (≈ 3× the time of an unchecked
    compilation, paid once per template version: compiled templates are cached)."""
    deadline = time.monotonic() + limits.compile_timeout_s

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and time.monotonic() > deadline:
            raise LimitExceeded(
                f"compiling took longer than {limits.compile_timeout_s:g} s", "compile_timeout_s"
            )

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield
    finally:
        sys.setprofile(previous)
