"""The template and subscription forms (pure): text fields ↔ what the services take.

Sample data and subscription filters are typed as JSON; a typo there is named with its line
and column instead of being dropped. Template errors carry the part and line, and the form
shows the offending source line next to the message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from postroom import jsonlimits
from postroom.errors import FieldError, ValidationError
from postroom.notify.render import TemplateError
from postroom.notify.schemas import SubscriptionRead, TemplateRead

__all__ = [
    "SUBSCRIPTION_FIELDS",
    "TEMPLATE_FIELDS",
    "TEMPLATE_LABELS",
    "Problem",
    "field_errors",
    "parse_json_object",
    "problem_from",
    "subscription_data",
    "subscription_summary",
    "template_data",
    "template_values",
]

TEMPLATE_FIELDS = ("name", "description", "subject", "html", "text", "sample_data")
TEMPLATE_LABELS = {
    "name": "Name",
    "description": "Description",
    "subject": "Subject",
    "html": "HTML",
    "text": "Text",
    "sample_data": "Sample data",
}
SUBSCRIPTION_FIELDS = (
    "event",
    "process",
    "address",
    "template",
    "filter",
    "schedule",
    "timezone",
    "send_empty",
)


@dataclass(frozen=True)
class Problem:
    """A template that failed to render: where, why, and the source line at fault."""

    part: str
    line: int | None
    reason: str
    source: str | None

    @property
    def where(self) -> str:
        label = TEMPLATE_LABELS.get(self.part, self.part)
        return f"{label}, line {self.line}" if self.line else label


def template_values(t: TemplateRead) -> dict[str, str]:
    """A saved template (or one of its versions) as the form shows it."""
    return {
        "name": t.name,
        "description": t.description,
        "subject": t.subject,
        "html": t.html or "",
        "text": t.text or "",
        "sample_data": json.dumps(t.sample_data, indent=2, ensure_ascii=False),
    }


def parse_json_object(text: str, field: str, *, empty: Any = None) -> Any:
    """``text`` as a JSON object (``empty`` when blank); raises ValidationError at ``field``."""
    if not text.strip():
        return empty
    try:
        value = jsonlimits.loads(text)
    except jsonlimits.JsonTooDeep:
        raise ValidationError(
            FieldError(field, f"nests deeper than {jsonlimits.MAX_DEPTH} levels; flatten it")
        ) from None
    except json.JSONDecodeError as exc:
        raise ValidationError(
            FieldError(
                field, f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            )
        ) from None
    if not isinstance(value, dict):
        raise ValidationError(FieldError(field, 'must be a JSON object, such as {"key": "value"}'))
    return value


def template_data(values: Mapping[str, str], *, with_name: bool) -> dict[str, Any]:
    """The template the form describes; an empty part is no part (text: made from the HTML)."""
    data: dict[str, Any] = {
        "description": values.get("description", "").strip(),
        "subject": values.get("subject", ""),
        "html": values.get("html", "") or None,
        "text": values.get("text", "") or None,
        "sample_data": parse_json_object(values.get("sample_data", ""), "sample_data", empty={}),
    }
    if with_name:
        data["name"] = values.get("name", "").strip()
    return data


def subscription_data(values: Mapping[str, str]) -> dict[str, Any]:
    """The subscription the add form describes. A filter value that is not a list is taken as
    the only allowed value (``{"status": "failed"}`` means ``["failed"]``)."""
    rules = parse_json_object(values.get("filter", ""), "filter")
    if rules is not None:
        rules = {k: v if isinstance(v, list) else [v] for k, v in rules.items()}
    return {
        "event": values.get("event", "").strip(),
        "process": values.get("process", "").strip() or None,
        "address": values.get("address", "").strip(),
        "template": values.get("template", "").strip() or None,
        "filter": rules,
        "schedule": values.get("schedule", "").strip() or None,
        "timezone": values.get("timezone", "").strip() or "UTC",
        "send_empty": values.get("send_empty") == "1",
    }


def subscription_summary(sub: SubscriptionRead) -> str:
    """'at once' or 'summary 0 8 * * 1-5 (Europe/Berlin)', for the list."""
    if not sub.schedule:
        return "at once"
    return f"summary {sub.schedule} ({sub.timezone})"


def field_errors(exc: ValidationError, fields: tuple[str, ...]) -> dict[str, list[str]]:
    """Messages per form field; those of no field are listed under ``""``."""
    out: dict[str, list[str]] = {}
    for error in exc.errors:
        field = str(error.field).split(".")[0]
        message = error.message
        if "html" in fields and message.startswith("html: give an html"):  # "no body" rule
            field, message = "html", "give an HTML or a text part (or both)"
        if field not in fields:
            message = f"{error.field}: {message}" if error.field else message
            field = ""
        out.setdefault(field, []).append(message)
    return out


def problem_from(exc: TemplateError, values: Mapping[str, str]) -> Problem:
    """A render failure with the source line it points at (when there is one)."""
    part = str(exc.part)
    source = None
    lines = values.get(part, "").splitlines()
    if exc.line and 0 < exc.line <= len(lines):
        source = lines[exc.line - 1]
    return Problem(part=part, line=exc.line, reason=exc.reason, source=source)
