"""The template service on SQLite and PostgreSQL: versions, built-in overrides, preview."""

from __future__ import annotations

from typing import Any

import pytest

from postroom import Postroom
from postroom.errors import Conflict, NotFound, StaleVersion, ValidationError
from postroom.notify.builtin_templates import BUILTIN_NAMES
from postroom.notify.render import TemplateError
from postroom.notify.templates import Templates


def spec(**over: Any) -> dict[str, Any]:
    return {
        "name": "deploy_done",
        "description": "A deployment finished",
        "subject": "Deployed {{ service }} {{ version }}",
        "html": "<h1>{{ service }}</h1>\n<p>Version {{ version }} is live.</p>",
        "sample_data": {"service": "billing", "version": "1.4.2"},
        **over,
    }


@pytest.fixture
def templates(app: Postroom) -> Templates:
    return Templates(app.sessions)


def test_list_shows_builtins_as_version_zero(templates: Templates) -> None:
    found = {t.name: t for t in templates.list()}
    assert set(found) == set(BUILTIN_NAMES)
    assert all(t.version == 0 and t.origin == "builtin" for t in found.values())


def test_create_update_history_with_optimistic_versions(templates: Templates) -> None:
    created = templates.create(spec(), actor="alice")
    assert (created.version, created.origin, created.updated_by) == (1, "custom", "alice")
    updated = templates.update("deploy_done", {"subject": "Live: {{ service }}"}, version=1)
    assert updated.version == 2 and updated.html == created.html  # untouched parts stay
    with pytest.raises(StaleVersion) as exc:
        templates.update("deploy_done", {"subject": "Other"}, version=1)
    assert "now version 2" in exc.value.message
    assert [t.version for t in templates.history("deploy_done")] == [2, 1]
    assert templates.get("deploy_done").subject == "Live: {{ service }}"
    with pytest.raises(Conflict):
        templates.create(spec())


def test_text_part_is_removed_with_null(templates: Templates) -> None:
    templates.create(spec(text="{{ service }} {{ version }}"))
    assert templates.preview("deploy_done").text == "billing 1.4.2"
    templates.update("deploy_done", {"text": None})
    assert templates.preview("deploy_done").text == "billing\n=======\n\nVersion 1.4.2 is live.\n"


def test_saving_a_broken_template_names_the_part_and_line(templates: Templates) -> None:
    with pytest.raises(ValidationError) as exc:
        templates.create(spec(html="<p>ok</p>\n<p>{{ service.__class__ }}</p>"))
    assert exc.value.field == "html" and exc.value.errors[0].message.startswith("line 2:")
    with pytest.raises(ValidationError) as exc:
        templates.create(spec(subject="{% if %}"))
    assert exc.value.field == "subject" and "syntax error" in exc.value.message
    with pytest.raises(ValidationError) as exc:
        templates.create(spec(html="<p>{{ missing_field }}</p>"))
    assert "'missing_field' is undefined" in exc.value.message
    with pytest.raises(NotFound):
        templates.get("deploy_done")


def test_builtin_override_and_revert(templates: Templates) -> None:
    shipped = templates.get("alert")
    override = templates.update("alert", {"subject": "ALERT {{ title }}"}, version=0, actor="bob")
    assert (override.version, override.origin) == (1, "override")
    assert templates.preview("alert").subject == "ALERT Disk almost full on build-agent-3"
    with pytest.raises(StaleVersion):
        templates.update("alert", {"subject": "again"}, version=0)
    restored = templates.delete("alert", version=1)
    assert restored is not None and restored.subject == shipped.subject and restored.version == 2
    assert templates.get("alert").origin == "builtin"
    assert [(t.version, t.deleted) for t in templates.history("alert")] == [
        (2, True), (1, False), (0, False)
    ]  # fmt: skip
    with pytest.raises(Conflict, match="built-in"):
        templates.delete("alert")
    # saving again continues the numbering
    assert templates.update("alert", {"subject": "Again {{ title }}"}, version=2).version == 3


def test_deleted_custom_template_can_be_created_again(templates: Templates) -> None:
    templates.create(spec())
    assert templates.delete("deploy_done") is None
    with pytest.raises(NotFound):
        templates.get("deploy_done")
    assert templates.create(spec()).version == 3


def test_preview_on_sample_data_other_data_and_unsaved_spec(templates: Templates) -> None:
    r = templates.preview("run_finished")
    assert r.subject == "nightly-regression: run failed (3 failed)"
    r = templates.preview("run_finished", data={"process": "p", "status": "succeeded"})
    assert r.subject == "p: run succeeded" and "SUCCEEDED" in (r.html or "")
    r = templates.preview(spec=spec())
    assert r.subject == "Deployed billing 1.4.2"
    with pytest.raises(TemplateError) as exc:
        templates.preview("run_finished", data={"status": "failed"})
    assert "'process' is undefined" in exc.value.message


def test_system_mail_carries_auto_submitted(templates: Templates) -> None:
    r = templates.render_system_mail(
        "password_reset", {"reset_url": "https://p.test/r/1", "user_name": "<b>Eve</b>"}
    )
    assert r.headers["Auto-Submitted"] == "auto-generated"
    assert "https://p.test/r/1" in r.text and "&lt;b&gt;Eve&lt;/b&gt;" in (r.html or "")
    with pytest.raises(TemplateError, match="reset_url"):
        templates.render_system_mail("password_reset", {})


def test_audit_records_template_changes(app: Postroom, templates: Templates) -> None:
    templates.create(spec(), actor="alice")
    templates.update("deploy_done", {"description": "x"}, actor="bob")
    entries = app.audit.list(target_type="template")
    assert [(e.actor, e.action, e.details["version"]) for e in entries] == [
        ("bob", "update", 2), ("alice", "create", 1)
    ]  # fmt: skip
