"""`postroom --help` answers at once: help loads none of the server or database stack.

A timed test would be flaky on a loaded machine; what makes start-up slow is what gets
imported, so that is what is checked (the measured times are in docs/cli.md).
"""

from __future__ import annotations

import json
import subprocess
import sys

import typer.main

from postroom.cli import cli

HEAVY = ("sqlalchemy", "fastapi", "starlette", "uvicorn", "jinja2", "alembic")

# runs each argv through the real entry point, then reports every module it loaded
PROBE = r"""
import json, sys
from postroom.cli import main
for argv in json.loads(sys.argv[1]):
    sys.argv = ["postroom", *argv]
    try:
        main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise SystemExit(f"{argv} exited with {exc.code}")
print("\nMODULES " + json.dumps(sorted(sys.modules)))
"""


def _loaded_after(*argvs: list[str]) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(argvs))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.rsplit("\nMODULES ", 1)[1]
    return {name.split(".")[0] for name in json.loads(line)}


def _command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        paths.append(path)
        for name, sub in (subs or {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(cli), [])
    return paths


def test_top_level_help_loads_no_heavy_module() -> None:
    loaded = _loaded_after(["--help"])
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    # nor the app, its schemas or Rich's help boxes
    assert "rich" not in loaded


def test_profile_help_loads_no_heavy_module() -> None:
    loaded = _loaded_after(["profile", "--help"])
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_every_commands_help_loads_no_heavy_module() -> None:
    paths = _command_paths()
    assert len(paths) > 50  # the walk reached the leaves
    loaded = _loaded_after(*([*p, "--help"] for p in paths))
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_python_api_still_imports_as_before() -> None:
    # the package's lazy attributes: `from postroom import Postroom` keeps working
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, postroom; assert 'sqlalchemy' not in sys.modules; "
            "from postroom import Postroom, ProfileSpec, ValidationError; "
            "print(Postroom.__name__, ProfileSpec.__name__, 'sqlalchemy' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Postroom", "ProfileSpec", "True"]
