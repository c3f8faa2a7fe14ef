"""HTTP error responses: the one place where postroom's errors become status codes.

Every error body has the shape ``{"error": {"code", "message", "field"?, "errors"?}}``.
Nothing a client submitted is echoed back (it may be a password): validation messages
are checked against the request's values here, whatever produced them, and an
unexpected exception shows no traceback. A body nested deeper than
:data:`postroom.jsonlimits.MAX_DEPTH` is a 422 on every endpoint.

::

    PostroomError                 -> its own code; 500 unless listed below
    ├── ValidationError           -> 422 validation_error (field, errors[])
    ├── NotFound                  -> 404 not_found
    ├── Conflict                  -> 409 conflict
    │   ├── StaleVersion          -> 409 stale_version
    │   └── ProfileInUse          -> 409 conflict (processes, is_default)
    ├── PermissionDenied          -> 403 forbidden
    └── Unauthorized              -> 401 unauthorized (WWW-Authenticate: Bearer)
    RequestValidationError        -> 422 validation_error (FastAPI: bad JSON, wrong types)
    HTTPException                 -> its status (unknown route, wrong method)
    anything else                 -> 500 internal_error
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from postroom.errors import (
    Conflict,
    FieldError,
    NotFound,
    PermissionDenied,
    PostroomError,
    RateLimited,
    Unavailable,
    ValidationError,
)
from postroom.jsonlimits import MAX_DEPTH, JsonTooDeep
from postroom.notify.render import TemplateError
from postroom.profiles.service import ProfileInUse
from postroom.redact import redact_all
from postroom.validation import friendly_message

__all__ = [
    "ERROR_RESPONSES",
    "ErrorDetail",
    "ErrorResponse",
    "FieldErrorOut",
    "Unauthorized",
    "error_responses",
    "install_error_handlers",
]

log = logging.getLogger(__name__)

_REQUEST_LOCATIONS = frozenset({"body", "query", "path"})


class Unauthorized(PostroomError):
    """No API key, or one that is unknown or revoked."""

    code = "unauthorized"

    def __init__(self, message: str, *, invalid_token: bool = False) -> None:
        super().__init__(message)
        self.invalid_token = invalid_token


class FieldErrorOut(BaseModel):
    field: str | None = None
    message: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None
    errors: list[FieldErrorOut] | None = None
    processes: list[str] | None = None
    is_default: bool | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(*described: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given (status, description) pairs, in the error shape."""
    return {status: {"model": ErrorResponse, "description": text} for status, text in described}


#: The error responses every authenticated route may give, for the OpenAPI document.
ERROR_RESPONSES = error_responses(
    (401, "No API key, or an unknown or revoked one"),
    (403, "The API key's role may not do this"),
    (422, "Invalid input; `field` names the first bad field, `errors` lists all"),
)

# Subclasses before their parents: the first match wins.
_STATUS: tuple[tuple[type[PostroomError], int], ...] = (
    (ValidationError, 422),
    (NotFound, 404),
    (Conflict, 409),
    (PermissionDenied, 403),
    (Unauthorized, 401),
    (Unavailable, 503),  # before RateLimited, which it is (both send Retry-After)
    (RateLimited, 429),
    (TemplateError, 422),
)


def _status_for(exc: PostroomError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _field_errors(errors: Sequence[FieldError]) -> list[FieldErrorOut]:
    return [FieldErrorOut(field=e.field or None, message=e.message) for e in errors]


def _json(status: int, detail: ErrorDetail, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=detail).model_dump(mode="json", exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


#: What stands in a message where it quoted a value the caller sent.
_NOT_ECHOED = "…"
_MAX_VALUES = 10_000


def _strings(value: Any, out: list[str]) -> None:
    """The string leaves of a parsed JSON value (iteratively; bounded in count)."""
    stack = [value]
    while stack and len(out) < _MAX_VALUES:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _submitted(request: Request, body: Any = None) -> list[str]:
    """Every value the caller sent: body (as parsed), query and path parameters."""
    values: list[str] = []
    _strings(getattr(request.state, "submitted", None), values)
    _strings(body, values)
    values += request.query_params.values()
    values += [str(v) for v in request.path_params.values()]
    # services strip what they store, and may quote the stripped form
    return [w for v in values for w in {v, v.strip()} if w]


def _without_echo(errors: list[FieldError], values: list[str]) -> list[FieldError]:
    """``errors`` with any value the caller sent taken out of the messages: quoted, or
    long enough that it cannot be there by chance (see :mod:`postroom.redact`)."""
    if not values:
        return errors
    return [
        FieldError(
            e.field,
            redact_all(e.message, values, mask=_NOT_ECHOED, standalone=False, long_from=6),
        )
        for e in errors
    ]


def _validation_response(errors: list[FieldError], submitted: list[str]) -> JSONResponse:
    errors = _without_echo(errors, submitted)
    first = errors[0]
    message = f"{first.field}: {first.message}" if first.field else first.message
    return _json(
        422,
        ErrorDetail(
            code=ValidationError.code,
            message=message,
            field=first.field or None,
            errors=_field_errors(errors),
        ),
    )


async def _postroom_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PostroomError)
    if isinstance(exc, ValidationError):
        return _validation_response(exc.errors, _submitted(request))
    status = _status_for(exc)
    detail = ErrorDetail(code=exc.code, message=exc.message)
    headers = None
    if isinstance(exc, ProfileInUse):
        detail.processes = exc.processes
        detail.is_default = exc.is_default
    elif isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif isinstance(exc, Unauthorized):
        headers = {
            "WWW-Authenticate": 'Bearer error="invalid_token"' if exc.invalid_token else "Bearer"
        }
    if status == 500:
        log.error("%s %s failed: %s: %s", request.method, request.url.path, exc.code, exc.message)
    return _json(status, detail, headers)


def _friendly(error: dict[str, Any]) -> str:
    """A message for one request error, in words for people, never quoting the input."""
    match error.get("type"):
        case "json_invalid":
            return "The request body is not valid JSON."
        case "dict_type" | "model_type" | "model_attributes_type":
            return "must be a JSON object"
        case "literal_error":
            return f"must be one of {(error.get('ctx') or {}).get('expected')}"
    return friendly_message(
        str(error.get("type")), error.get("ctx") or {}, str(error.get("msg", "is not valid"))
    )


def _request_field(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        return ""  # its location is a character offset, not a field
    loc = [str(part) for part in error.get("loc", ())]
    if loc and loc[0] in _REQUEST_LOCATIONS:
        loc = loc[1:]
    return ".".join(loc)


async def _request_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [FieldError(_request_field(e), _friendly(e)) for e in exc.errors()]
    if not errors:
        errors = [FieldError("", "The request is not valid.")]
    return _validation_response(errors, _submitted(request, exc.body))


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _ui_not_found(request: Request) -> Response | None:
    """A path outside /api/ that no route matched is a mistyped or stale page address: the
    admin UI's HTML not-found page answers it, not JSON (when the UI is installed)."""
    path = request.url.path
    if path == "/api" or path.startswith("/api/"):
        return None
    web = getattr(request.app.state, "postroom_web", None)
    if web is None:
        return None
    page: Response = web.not_found_page(request)
    return page


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if isinstance(exc.__cause__, RecursionError):
        # FastAPI parsed a body for a route with a declared model and ran out of stack.
        too_deep = JsonTooDeep(MAX_DEPTH)
        return _validation_response([FieldError("", str(too_deep))], [])
    # The path is not repeated: it is client input like any other.
    if status == 404 and exc.detail == HTTPStatus.NOT_FOUND.phrase:
        page = _ui_not_found(request)
        if page is not None:
            return page
        message = (
            "There is no such endpoint. /api/v1/openapi.json describes every endpoint "
            "(docs/api.md in words)."
        )
    elif status == 405:
        message = (
            f"This endpoint does not accept {request.method}; "
            f"/api/v1/openapi.json lists its methods."
        )
    else:
        message = str(exc.detail)
    code = _HTTP_CODES.get(status, "http_error")
    return _json(status, ErrorDetail(code=code, message=message), dict(exc.headers or {}))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this response, so the server log keeps the traceback.
    return _json(
        500,
        ErrorDetail(
            code="internal_error",
            message="Something went wrong inside postroom; the server log has the details.",
        ),
    )


def install_error_handlers(api: FastAPI) -> None:
    """Map every error to the JSON error shape on ``api``."""
    api.add_exception_handler(PostroomError, _postroom_error)
    api.add_exception_handler(RequestValidationError, _request_validation_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(Exception, _unexpected_error)
