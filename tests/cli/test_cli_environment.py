"""A bad environment variable is a clear error naming it, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).parent / "postroom")


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("POSTROOM_OUTBOX_RETENTION_DAYS", "-1", "greater than or equal to 0"),
        ("POSTROOM_OUTBOX_RETENTION_DAYS", "abc", "valid integer"),
        ("POSTROOM_PORT", "70000", "less than or equal to 65535"),
    ],
)
def test_bad_environment_is_named(tmp_path: Path, name: str, value: str, says: str) -> None:
    env = {**os.environ, "POSTROOM_DATA_DIR": str(tmp_path), name: value}
    result = subprocess.run(
        [EXE, "outbox", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert f"invalid environment: {name}: " in result.stderr and says in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
