"""Every command's help is readable in an 80-column terminal."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from postroom.cli import cli

TYPE_METAVAR = re.compile(r"<(str|int|float|bool|path|datetime|list\[[^\]]*\])>")


def _paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(cli), [])
    return paths


def _help(path: list[str]) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", _paths(), ids=lambda p: " ".join(p) or "postroom")
def test_help_fits_80_columns_with_words_for_values(path: list[str]) -> None:
    text = _help(path)
    too_long = [line for line in text.splitlines() if len(line) > 80]
    assert not too_long, too_long
    assert not TYPE_METAVAR.findall(text), TYPE_METAVAR.findall(text)
    assert "…" not in text and "╭" not in text  # nothing cut, no boxes
    cut = [ln for ln in text.splitlines() if ln.endswith("...") and "Usage:" not in ln]
    assert not cut, cut


@pytest.mark.parametrize("path", _paths(), ids=lambda p: " ".join(p) or "postroom")
def test_every_flag_has_a_line_of_help(path: list[str]) -> None:
    cmd = typer.main.get_command(cli)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    bare = [p.opts[0] for p in cmd.params if p.param_type_name == "option" and not p.help]
    assert not bare, bare


def test_profile_add_and_edit_have_their_own_help() -> None:
    add, edit = _help(["profile", "add"]), _help(["profile", "edit"])
    assert "Create a profile" in add and "Change the given fields" in edit
    for edit_only in ("--version ", "--force ", "--no-imap ", "--name "):
        assert edit_only in edit and edit_only not in add, edit_only
