"""Postroom: email for automation platforms.

>>> from postroom import Postroom
>>> app = Postroom.open()                       # ./.postroom, SQLite
>>> app.profiles.create({...})                  # doctest: +SKIP
"""

from postroom.app import Postroom
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
