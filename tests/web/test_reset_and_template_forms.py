"""Without a browser: where reset links point, the request limit, and the template and
subscription forms' mapping (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.requests import Request

from postroom import Postroom
from postroom.errors import FieldError, ValidationError
from postroom.notify.render import TemplateError
from postroom.throttles import Limit, Throttles
from postroom.web.core import WebState
from postroom.web.template_form import (
    SUBSCRIPTION_FIELDS,
    TEMPLATE_FIELDS,
    field_errors,
    parse_json_object,
    problem_from,
    subscription_data,
    template_data,
)
from postroom.web.views.reset import link_base


def _request(host_header: str, server: tuple[str, int | None], scheme: str = "http") -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "scheme": scheme,
        "server": server,
        "path": "/forgot-password",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", host_header.encode())],
    }
    return Request(scope)


def test_reset_links_never_trust_the_host_header(sqlite_app: Postroom) -> None:
    web = WebState(sqlite_app)
    forged = _request("evil.example", ("127.0.0.1", 8611))
    assert link_base(web, forged) == "http://127.0.0.1:8611"
    assert link_base(web, _request("x", ("::1", 8600))) == "http://[::1]:8600"
    assert link_base(web, _request("x", ("/run/postroom.sock", None))) == "http://127.0.0.1:8600"


def test_reset_links_use_the_public_url(app_factory: Any) -> None:
    pr = app_factory("sqlite", public_url="https://mail.example.com/")
    web = WebState(pr)
    assert (
        link_base(web, _request("evil.example", ("10.0.0.5", 8600))) == "https://mail.example.com"
    )


def test_request_limit_counts_per_key_within_the_window(app: Postroom) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = [start]
    limits = Throttles(app.sessions, clock=lambda: now[0])
    limit = Limit("test", 2, timedelta(seconds=60))
    assert limits.take(limit, "10.0.0.1") == 0 and limits.take(limit, "10.0.0.1") == 0
    assert limits.take(limit, "10.0.0.1") == pytest.approx(60)
    assert limits.take(limit, "10.0.0.2") == 0  # another address has its own count
    now[0] = start + timedelta(seconds=30)
    assert limits.take(limit, "10.0.0.1") == pytest.approx(30)  # refused ones are not counted
    now[0] = start + timedelta(seconds=60)
    assert limits.take(limit, "10.0.0.1") == 0
    limits.clear(limit)
    assert limits.take(limit, "10.0.0.1") == 0 and limits.take(limit, "10.0.0.1") == 0


def test_template_form_parts_and_sample_data() -> None:
    values = {"name": " deploy ", "subject": "S", "html": "", "text": "T", "sample_data": ""}
    assert template_data(values, with_name=True) == {
        "name": "deploy",
        "description": "",
        "subject": "S",
        "html": None,
        "text": "T",
        "sample_data": {},
    }
    with pytest.raises(ValidationError) as caught:
        template_data({**values, "sample_data": '{\n  "a": 1,\n}'}, with_name=False)
    (error,) = caught.value.errors
    assert error.field == "sample_data"
    assert error.message.startswith("is not valid JSON") and "(line 3, column 1)" in error.message
    with pytest.raises(ValidationError, match="must be a JSON object"):
        parse_json_object("[1, 2]", "sample_data")


def test_errors_land_on_their_fields_and_template_errors_show_their_line() -> None:
    exc = ValidationError(
        [
            FieldError("filter.status", "needs at least one allowed value"),
            FieldError("", "html: give an html or a text part (or both)"),
            FieldError("weird", "x"),
        ]
    )
    assert field_errors(exc, SUBSCRIPTION_FIELDS) == {
        "filter": ["needs at least one allowed value"],
        "": ["html: give an html or a text part (or both)", "weird: x"],
    }
    assert field_errors(exc, TEMPLATE_FIELDS)["html"] == ["give an HTML or a text part (or both)"]

    problem = problem_from(
        TemplateError("t", "html", "access to attribute '__class__' is unsafe", line=2),
        {"html": "<p>ok</p>\n<p>{{ ''.__class__ }}</p>"},
    )
    assert problem.where == "HTML, line 2" and problem.source == "<p>{{ ''.__class__ }}</p>"
    assert problem_from(TemplateError("t", "subject", "bad"), {}).where == "Subject"


def test_subscription_form_fills_defaults_and_wraps_single_filter_values() -> None:
    data = subscription_data(
        {"event": " run.* ", "address": "a@example.com", "filter": '{"status": "failed"}',
         "timezone": "", "send_empty": "1"}
    )  # fmt: skip
    assert data == {
        "event": "run.*",
        "process": None,
        "address": "a@example.com",
        "template": None,
        "filter": {"status": ["failed"]},
        "schedule": None,
        "timezone": "UTC",
        "send_empty": True,
    }
