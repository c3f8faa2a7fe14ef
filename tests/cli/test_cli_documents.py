"""`profile apply -f`: a document nested too deeply is bad input (exit 2), not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from postroom.cli import cli


@pytest.mark.parametrize(
    "text",
    ['{"name": "x", "smtp": ' + "[" * 3000 + "]" * 3000 + "}", "a:\n" + "- " * 3000 + "1\n"],
    ids=["json", "yaml"],
)
def test_deeply_nested_document_exits_2(tmp_path: Path, text: str) -> None:
    doc = tmp_path / "profile.json"
    doc.write_text(text)
    env = {"POSTROOM_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(cli, ["profile", "apply", "-f", str(doc)], env=env)
    assert result.exit_code == 2, result.output
    assert "levels deep" in result.output and "Traceback" not in result.output
