"""The templates postroom ships (package data under ``notify/builtin/``), read-only defaults.

Each built-in ``NAME`` is three files: ``NAME.yaml`` (description, subject, sample data),
``NAME.html`` and ``NAME.txt``. ``_layout.html`` and ``_layout.txt`` are the shared mail
layout that built-in and admin templates may ``{% extends %}``; they are the only files a
template can load.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import yaml

__all__ = ["BUILTIN_NAMES", "LAYOUTS", "BuiltinTemplate", "builtin", "layout_source"]

BUILTIN_NAMES = ("alert", "password_reset", "run_finished", "scheduled_summary", "user_invitation")
LAYOUTS = ("_layout.html", "_layout.txt")


@dataclass(frozen=True)
class BuiltinTemplate:
    name: str
    description: str
    subject: str
    html: str
    text: str
    sample_data: dict[str, Any]


def _read(filename: str) -> str:
    return files("postroom.notify").joinpath("builtin", filename).read_text("utf-8")


@functools.cache
def builtin(name: str) -> BuiltinTemplate | None:
    """The shipped template ``name``, or None when postroom ships none of that name."""
    if name not in BUILTIN_NAMES:
        return None
    meta = yaml.safe_load(_read(f"{name}.yaml"))
    return BuiltinTemplate(
        name=name,
        description=str(meta["description"]).strip(),
        subject=str(meta["subject"]).strip(),
        html=_read(f"{name}.html"),
        text=_read(f"{name}.txt"),
        sample_data=dict(meta.get("sample_data") or {}),
    )


@functools.cache
def layout_source(name: str) -> str | None:
    """The source of a shared layout (``_layout.html`` / ``_layout.txt``), else None."""
    return _read(name) if name in LAYOUTS else None
