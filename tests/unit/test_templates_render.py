"""Rendering templates: built-ins, escaping, the sandbox, CSS inlining, text from HTML."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from postroom.notify.builtin_templates import BUILTIN_NAMES, builtin
from postroom.notify.plaintext import html_to_text
from postroom.notify.render import Rendered, TemplateError, TemplateSource, render

SCRIPT = "<script>alert('x')</script>"

# per built-in: the data field a hostile value goes into, and words the mail must show
EXPECTED: dict[str, tuple[str, list[str]]] = {
    "password_reset": ("user_name", ["reset the password", "https://postroom.example.com/reset/7f3a9c0e", "1 hour"]),
    "user_invitation": ("message", ["Alex Example invited you", "https://postroom.example.com/invite/4b1d22e9", "admin"]),
    "alert": ("details", ["CRITICAL", "Disk almost full on build-agent-3", "build-agent-3", "97% full", "https://automation.example.com/agents/build-agent-3"]),
    "run_finished": ("process", ["nightly-regression", "failed", "12 min 37 s", "114 passed", "invoice PDF", "Expected 2 pages, got 1", "https://automation.example.com/runs/4711"]),
    "scheduled_summary": ("process", ["Summary", "invoice-export", "crm-sync", "nightly-regression", "2 min 11 s", "12 min 37 s"]),
}  # fmt: skip


def render_builtin(name: str, data: dict[str, Any] | None = None) -> Rendered:
    found = builtin(name)
    assert found is not None
    source = TemplateSource(name, found.subject, found.html, found.text)
    return render(source, found.sample_data if data is None else data)


def render_source(
    html: str | None, text: str | None = None, subject: str = "Hi", **data: Any
) -> Rendered:
    return render(TemplateSource("custom", subject, html, text), data)


def test_every_builtin_has_an_expectation() -> None:
    assert sorted(EXPECTED) == sorted(BUILTIN_NAMES)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_renders_html_and_text_with_its_content(name: str) -> None:
    r = render_builtin(name)
    _, words = EXPECTED[name]
    assert r.subject and "\n" not in r.subject
    assert r.html is not None and r.html.startswith("<!DOCTYPE html>")
    for word in words:
        assert word in r.html, word
        assert word.replace("&", "&amp;") in r.html
        assert word in r.text or word in r.subject, word
    # the text part is clean text: no markup, no template syntax, no runs of blank lines
    for junk in ("<", "{{", "{%", "&amp;", "&nbsp;", "\n\n\n"):
        if junk == "<" and name in ("run_finished",):
            continue  # the sample has a step named "refund <partial>"
        assert junk not in r.text, (junk, r.text)
    assert all(line == line.rstrip() or line == "-- " for line in r.text.splitlines())


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_css_is_inlined_for_mail_clients(name: str) -> None:
    html = render_builtin(name).html or ""
    assert 'style="' in html and "background-color: #ffffff" in html
    head_style = html.split("<style>", 1)[1].split("</style>", 1)[0] if "<style>" in html else ""
    assert head_style.strip().startswith("@media")  # only the responsive rules stay


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_script_in_data_is_escaped_in_html_and_literal_in_text(name: str) -> None:
    field, _ = EXPECTED[name]
    sample = builtin(name).sample_data  # type: ignore[union-attr]
    data = copy.deepcopy(sample)
    data[field] = SCRIPT
    if name == "scheduled_summary":
        data["runs"][0]["process"] = SCRIPT
    r = render_builtin(name, data)
    assert SCRIPT not in (r.html or "")
    assert "&lt;script&gt;" in (r.html or "")
    assert SCRIPT in r.text or SCRIPT in r.subject


def test_unsubscribe_link_only_when_given() -> None:
    found = builtin("run_finished")
    assert found is not None
    data = {k: v for k, v in found.sample_data.items() if k != "unsubscribe_url"}
    r = render_builtin("run_finished", data)
    assert "nsubscribe" not in (r.html or "") and "nsubscribe" not in r.text
    r = render_builtin("run_finished")
    assert 'href="https://postroom.example.com/unsubscribe/sample"' in (r.html or "")
    assert "Unsubscribe: https://postroom.example.com/unsubscribe/sample" in r.text


def test_summary_of_an_empty_period() -> None:
    data = {"period": {"start": "2026-11-23T07:00:00+00:00", "end": "2026-11-24T07:00:00+00:00",
                       "timezone": "UTC"}, "runs": [], "total": 0, "hidden": 0, "by_status": {}}  # fmt: skip
    r = render_builtin("scheduled_summary", data)
    assert r.subject == "Summary: 0 runs"
    assert "Nothing ran in this period." in r.text and "Nothing ran" in (r.html or "")


@pytest.mark.parametrize(
    "attack",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ self._TemplateReference__context }}",
        "{{ '{0.__class__}'.format(name) }}",
        "{{ name.__class__ }}",
        "{{ 'x' * 100000000 }}",
        "{{ 10 ** 100000 }}",
        "{% for i in range(100000) %}{% for j in range(1000) %}xxxxxxxxxx{% endfor %}{% endfor %}",
    ],
)
def test_injection_fails_with_a_clear_error(attack: str) -> None:
    with pytest.raises(TemplateError) as exc:
        render_source("<p>line one</p>\n<p>" + attack + "</p>", name="n")
    assert exc.value.template == "custom" and exc.value.part == "html"
    assert exc.value.message.startswith("Template 'custom' (html")
    assert "Traceback" not in exc.value.message
    if "range" not in attack:
        assert exc.value.line == 2
        assert any(
            reason in exc.value.message
            for reason in ("not allowed in templates", "undefined", "the limit is set by")
        )


def test_template_cannot_load_files() -> None:
    with pytest.raises(TemplateError) as exc:
        render_source('{% include "/etc/passwd" %}')
    assert "only _layout.html and _layout.txt" in exc.value.message


def test_syntax_error_names_part_and_line() -> None:
    with pytest.raises(TemplateError) as exc:
        render_source(None, text="Hello\n{% if x %}\nno end", subject="S")
    assert exc.value.part == "text" and exc.value.line is not None
    assert "syntax error" in exc.value.message


def test_missing_value_fails_when_printed_but_may_be_tested() -> None:
    assert render_source("{% if link %}<a href='{{ link }}'>x</a>{% endif %}ok").text == "ok\n"
    with pytest.raises(TemplateError) as exc:
        render_source("<p>a</p>\n<p>{{ lnik }}</p>")
    assert exc.value.line == 2 and "'lnik' is undefined" in exc.value.message


def test_runtime_error_is_reported_not_raised() -> None:
    with pytest.raises(TemplateError) as exc:
        render_source("{{ 1 / zero }}", zero=0)
    assert "ZeroDivisionError" in exc.value.message


def test_text_is_generated_from_html_without_text_part() -> None:
    r = render_source(
        "<style>p { color: #123456 }</style><h1>Run &amp; done</h1><p>See <a href='https://x.test/r/1'>the run</a>"
        "</p><ul><li>one</li><li>{{ item }}</li></ul>",
        item="<b>two</b>",
    )
    assert (
        r.text
        == "Run & done\n==========\n\nSee the run (https://x.test/r/1)\n\n- one\n- <b>two</b>\n"
    )
    assert 'style="color: #123456;"' in (r.html or "")


def test_stylesheet_links_are_never_fetched() -> None:
    r = render_source('<link rel="stylesheet" href="http://169.254.169.254/latest/x.css"><p>x</p>')
    assert "169.254.169.254" not in (r.html or "")


def test_subject_is_one_line_and_bounded() -> None:
    r = render_source(None, text="x", subject="{{ a }}\r\n{{ b }}", a="Run\nfailed", b="x" * 500)
    assert "\n" not in r.subject and "\r" not in r.subject
    assert r.subject.startswith("Run failed x") and len(r.subject) == 200
    with pytest.raises(TemplateError, match="subject is empty"):
        render_source(None, text="x", subject="{{ '' }}")


def test_filters_duration_and_datetime() -> None:
    src = "{{ a | duration }}|{{ b | duration }}|{{ c | duration }}|{{ t | datetime('Europe/Berlin') }}"
    r = render_source(None, text=src, a=0.25, b=75, c=7300, t="2026-07-01T10:00:00+00:00")
    assert r.text == "250 ms|1 min 15 s|2 h 01 min|2026-07-01 12:00 CEST"


def test_html_to_text_tables_lists_preheader_and_pre() -> None:
    html = (
        '<div style="display: none">preheader text</div>'
        "<table><tr><th>Process</th><th>Status</th></tr>"
        "<tr><td>nightly</td><td>failed</td></tr><tr><td>crm-sync</td><td>ok</td></tr></table>"
        "<ol><li>first</li><li>second</li></ol><pre>  indented\n    more</pre>"
        "<p>a<br>b <img alt='logo'> <a href='mailto:ops@x.test'>ops@x.test</a></p>"
    )
    assert html_to_text(html) == (
        "Process   Status\n--------  ------\nnightly   failed\ncrm-sync  ok\n\n"
        "1. first\n2. second\n\n  indented\n    more\n\na\nb [logo] ops@x.test\n"
    )


def test_layout_tables_flow_as_blocks() -> None:
    html = "<table><tr><td><p>Para one</p><p>Para two</p></td></tr></table>"
    assert html_to_text(html) == "Para one\n\nPara two\n"
