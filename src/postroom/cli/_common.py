"""What every command shares: opening postroom, error → exit code, output as text or JSON.

The CLI modules import only this, typer and the standard library at the top: everything
else (SQLAlchemy, pydantic models, the app) is imported inside the command that needs it,
so `postroom --help` answers at once (docs/cli.md, "Start-up time").
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar, get_args, get_origin

import typer
from typer.core import TyperGroup

from postroom.errors import (
    ConfigurationError,
    FieldError,
    NotFound,
    PostroomError,
    SecretReferenceError,
    ValidationError,
)

if TYPE_CHECKING:
    from postroom.app import Postroom

P = ParamSpec("P")
R = TypeVar("R")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
CLI_ACTOR = "cli"


class PlainHelpGroup(TyperGroup):
    """A group whose commands show a word for each value in their help (``--smtp-host HOST``,
    ``--limit N``, ``--lease SECONDS``) where the command did not name one, instead of
    Typer's ``<str>``, ``<int>`` and ``<list[str]>``."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for command in self.commands.values():
            for param in getattr(command, "params", ()):
                if param.metavar is None and not getattr(param, "is_flag", False):
                    param.metavar = _metavar(param)
                if param.param_type_name == "argument":
                    # the word is the argument's name already: no "NAME <str>"
                    param.display_type_rich = lambda ctx: None

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        # each command's first sentence whole, wrapped, instead of cut at the width with "..."
        rows = [
            (name, cmd.get_short_help_str(limit=1000))
            for name, cmd in self.commands.items()
            if not cmd.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _metavar(param: Any) -> str:
    opts: list[str] = [o for o in param.opts if o.startswith("--")] or [param.name or "value"]
    word = opts[0].lstrip("-").rsplit("-", 1)[-1].upper()
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation)
    if annotation is float:
        return "SECONDS"
    if annotation is int and word not in ("PORT", "ID", "VERSION"):
        return "N"
    return word


def group(help: str) -> typer.Typer:
    """A command group. Help is plain text: Rich's boxes cost half a second to import and
    cut long flag names at 80 columns."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, cls=PlainHelpGroup)


def err(message: str) -> None:
    typer.echo(message, err=True)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    err(f"error: {message}")
    raise typer.Exit(code)


def bad_input(field: str, message: str) -> NoReturn:
    raise ValidationError(FieldError(field, message))


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Map postroom errors to messages and exit codes: 2 bad input, 1 anything that failed."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            for e in exc.errors:
                err(f"error: {e.field}: {e.message}" if e.field else f"error: {e.message}")
            # well-formed input naming something missing or taken: the thing failed (1)
            failed = all(e.kind in ("not_found", "conflict") for e in exc.errors)
            raise typer.Exit(EXIT_FAILED if failed else EXIT_BAD_INPUT) from None
        except (ConfigurationError, SecretReferenceError, NotFound, PostroomError) as exc:
            fail(exc.message)

    return wrapper


@contextmanager
def opened(*, wait_for_database_s: float = 0.0) -> Iterator[Postroom]:
    """The installation of the environment. Long-running commands pass
    ``wait_for_database_s``: a database that is restarting is waited for, not fatal."""
    import time

    from sqlalchemy.exc import DBAPIError

    from postroom.app import Postroom

    deadline = time.monotonic() + wait_for_database_s
    delay = 0.5
    while True:
        try:
            app = Postroom.open()
            break
        except ConfigurationError as exc:
            if not isinstance(exc.__cause__, DBAPIError) or time.monotonic() + delay > deadline:
                raise
            err(f"postroom: the database is not reachable yet; trying again in {delay:.1f} s")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    try:
        yield app
    finally:
        app.close()


def to_jsonable(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)  # a pydantic model, without importing pydantic
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    typer.echo(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def read_document(path: str) -> dict[str, Any]:
    """A JSON or YAML object from ``path`` ('-' = standard input)."""
    import yaml

    from postroom import jsonlimits

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text("utf-8")
    except OSError as exc:
        bad_input("file", f"cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        bad_input("file", f"{path} is not UTF-8 text")
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        bad_input("file", f"{path} is neither valid JSON nor YAML{where}")
    except RecursionError:
        data = None
        deep = True
    else:
        deep = jsonlimits.too_deep(data)
    if deep:
        bad_input("file", f"{path} nests more than {jsonlimits.MAX_DEPTH} levels deep")
    if not isinstance(data, dict):
        bad_input("file", f"{path} must hold one object (a mapping of fields)")
    return data


def read_secret(*, stdin: bool, env: str | None, prompt: str | None, field: str) -> str | None:
    """A secret from standard input, an environment variable or a hidden prompt — never argv."""
    import os

    if stdin and env:
        bad_input(field, "give either --…-stdin or --…-env, not both")
    if stdin:
        value = sys.stdin.readline().rstrip("\r\n")
        if not value:
            bad_input(field, "standard input was empty")
        return value
    if env:
        if env not in os.environ:
            bad_input(field, f"the environment variable {env} is not set")
        return os.environ[env]
    if prompt and sys.stdin.isatty():
        value = typer.prompt(prompt, hide_input=True, default="", show_default=False)
        return value or None
    return None
