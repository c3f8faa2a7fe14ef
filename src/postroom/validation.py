"""Pydantic validation errors turned into postroom's field errors, in words for people."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from postroom.errors import FieldError, ValidationError

__all__ = ["friendly_message", "validate_model"]

M = TypeVar("M", bound=BaseModel)


def _loc_to_field(loc: tuple[int | str, ...], msg: str) -> tuple[str, str]:
    parts = [str(p) for p in loc if not str(p).startswith("function-")]
    # A model validator reports "field: message" for a sibling field.
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    head, sep, rest = msg.partition(": ")
    if sep and head.isidentifier() and " " not in head:
        parts.append(head)
        msg = rest
    return ".".join(parts), msg


def _number(value: Any) -> str:
    """0.0 → "0", 2.5 → "2.5": limits as people write them."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def friendly_message(kind: str, ctx: dict[str, Any], msg: str) -> str:
    """A pydantic error of ``kind`` in words for people; ``msg`` when there is no better one."""
    match kind:
        case "extra_forbidden":
            return "is not a known field"
        case "missing":
            return "is required"
        case "less_than_equal":
            return f"must be at most {ctx.get('le')}"
        case "greater_than_equal":
            return f"must be at least {ctx.get('ge')}"
        case "greater_than":
            return f"must be greater than {_number(ctx.get('gt'))} (leave it empty for no limit)"
        case "string_too_long":
            return f"must be at most {ctx.get('max_length')} characters"
        case "string_too_short":
            return "must not be empty"
        case "int_parsing" | "int_type" | "int_from_float":
            return "must be a whole number"
        case "float_parsing" | "float_type":
            return "must be a number"
        case "bool_parsing" | "bool_type":
            return "must be true or false"
        case "enum" | "literal_error":
            # pydantic's "'starttls', 'tls' or 'none'" reads like code: list the plain words
            words = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
            return "must be one of: " + ", ".join(words) if words else "is not an allowed value"
        case "string_type":
            return "must be text"
        case "model_type" | "model_attributes_type" | "dict_type":
            return "must be an object"
    return msg


def validate_model(model: type[M], data: Any) -> M:
    """Validate ``data`` into ``model``; raises ValidationError listing every bad field."""
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        errors = []
        # the input is looked at (was anything given?) but never quoted
        for err in exc.errors(include_url=False):
            field, msg = _loc_to_field(tuple(err["loc"]), str(err["msg"]))
            kind = err["type"]
            if kind.endswith("_type") and err.get("input", ...) is None:
                kind = "missing"  # an empty form field arrives as null
            msg = friendly_message(kind, err.get("ctx") or {}, msg)
            errors.append(FieldError(field, msg))
        # pydantic runs a model's cross-field rules only once its fields are valid, so a
        # form would name those problems one round later; a model that can check them on
        # the raw input says so with ``raw_problems`` (see ProfileSpec)
        raw_problems = getattr(model, "raw_problems", None)
        if raw_problems is not None:
            seen = {e.field for e in errors}
            errors += [e for e in raw_problems(data) if e.field not in seen]
        raise ValidationError(errors) from None
