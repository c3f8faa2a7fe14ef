"""Postroom: email for automation platforms.

>>> from postroom import Postroom
>>> app = Postroom.open()                       # ./.postroom, SQLite
>>> app.profiles.create({...})                  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from postroom.errors import (
    ConfigurationError,
    Conflict,
    FieldError,
    NotFound,
    PermissionDenied,
    PostroomError,
    SecretKeyError,
    StaleVersion,
    ValidationError,
)

if TYPE_CHECKING:
    from postroom.app import Postroom
    from postroom.profiles.schemas import ProfileRead, ProfileSpec

__all__ = [
    "ConfigurationError",
    "Conflict",
    "FieldError",
    "NotFound",
    "PermissionDenied",
    "Postroom",
    "PostroomError",
    "ProfileRead",
    "ProfileSpec",
    "SecretKeyError",
    "StaleVersion",
    "ValidationError",
]

__version__ = "0.1.0"

# Imported on first use (PEP 562): importing any postroom module imports this package, and
# `postroom --help` must not pay for SQLAlchemy, FastAPI and the rest (docs/cli.md).
_LAZY = {
    "Postroom": "postroom.app",
    "ProfileRead": "postroom.profiles.schemas",
    "ProfileSpec": "postroom.profiles.schemas",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'postroom' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
