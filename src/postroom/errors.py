"""Postroom's error tree.

Every error postroom raises on purpose derives from :class:`PostroomError`; library
errors are mapped to these at exactly one boundary per adapter (``raise ... from exc``).

::

    PostroomError
    ├── ValidationError            bad input; carries one or more FieldError (CLI exit 2, HTTP 422)
    ├── NotFound                   a named thing does not exist (CLI exit 1, HTTP 404)
    ├── Conflict                   a name is taken, or the thing is in use (HTTP 409)
    │   └── StaleVersion           an update carried an old ``version`` (HTTP 409)
    ├── PermissionDenied           the caller's role may not do this (HTTP 403)
    │   └── ConnectionTestsDisabled  the operator turned connection tests off (HTTP 403)
    ├── RateLimited                too many requests of one kind; try again later (HTTP 429)
    ├── ConfigurationError         settings or the secret key are missing or wrong (startup)
    │   └── SecretKeyError         a ciphertext cannot be decrypted with any configured key
    │       └── KeysNotRotated     ``keys rotate`` re-encrypted the rest but skipped some secrets
    └── SecretReferenceError       an ``env:``/``file:`` secret reference cannot be resolved

Messages are written for people: what happened and what to change. No message ever
contains a secret value.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConfigurationError",
    "Conflict",
    "ConnectionTestsDisabled",
    "FieldError",
    "KeysNotRotated",
    "NotFound",
    "PermissionDenied",
    "PostroomError",
    "RateLimited",
    "SecretKeyError",
    "SecretReferenceError",
    "StaleVersion",
    "Unavailable",
    "ValidationError",
]


class PostroomError(Exception):
    """Root of every error postroom raises on purpose."""

    code: str = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FieldError:
    """One invalid field: ``field`` is a dotted path such as ``smtp.port``."""

    field: str
    message: str
    #: "invalid" (the value is malformed), "not_found" (it names something that does not
    #: exist) or "conflict" (it clashes with what exists, e.g. a taken name). REST answers
    #: 422 for all three; the CLI exits 1 when every problem is not_found/conflict (the
    #: thing failed) and 2 for bad input.
    kind: str = "invalid"


class ValidationError(PostroomError):
    """Input was rejected; nothing was stored. ``errors`` lists every bad field."""

    code = "validation_error"

    def __init__(self, errors: list[FieldError] | FieldError) -> None:
        self.errors = [errors] if isinstance(errors, FieldError) else list(errors)
        if not self.errors:
            raise ValueError("ValidationError needs at least one FieldError")
        first = self.errors[0]
        super().__init__(f"{first.field}: {first.message}" if first.field else first.message)

    @property
    def field(self) -> str:
        return self.errors[0].field


class NotFound(PostroomError):
    code = "not_found"


class Conflict(PostroomError):
    code = "conflict"


class StaleVersion(Conflict):
    code = "stale_version"


class PermissionDenied(PostroomError):
    code = "forbidden"


class ConnectionTestsDisabled(PermissionDenied):
    """The operator turned connection tests off (``POSTROOM_CONNECTION_TESTS=disabled``)."""

    code = "connection_tests_disabled"


class RateLimited(PostroomError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(RateLimited):
    """Not accepted now, nothing stored: retry after ``retry_after_s`` (HTTP 503)."""

    code = "unavailable"


class ConfigurationError(PostroomError):
    code = "configuration_error"


class SecretKeyError(ConfigurationError):
    code = "secret_key_error"


class KeysNotRotated(SecretKeyError):
    """A key rotation re-encrypted ``rotated`` secrets but no key decrypts ``skipped`` ones
    (named); those were left as they were and must be set again."""

    code = "keys_not_rotated"

    def __init__(self, message: str, *, rotated: int, skipped: list[str]) -> None:
        super().__init__(message)
        self.rotated = rotated
        self.skipped = skipped


class SecretReferenceError(PostroomError):
    code = "secret_reference_error"
