"""`postroom template …`, `postroom subscription …` and `postroom events …`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli.events import events_app, subscription_app
from postroom.cli.templates import template_app
from postroom.settings import Settings

# the sub-apps as cli/__init__.py mounts them
cli = typer.Typer(pretty_exceptions_enable=False)
cli.add_typer(template_app, name="template")
cli.add_typer(events_app, name="events")
cli.add_typer(subscription_app, name="subscription")


@pytest.fixture
def run(tmp_path: Path, backend: str, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    env = {"POSTROOM_DATA_DIR": str(tmp_path / "data"), "POSTROOM_PUBLIC_URL": "https://p.test"}
    if backend == "postgresql":
        env["POSTROOM_DATABASE_URL"] = request.getfixturevalue("pg_schema_url")
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
        result = runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)
        assert "Traceback" not in result.output
        return result

    yield invoke
    if backend == "postgresql":
        app = Postroom.open(
            settings=Settings(data_dir=tmp_path / "data", database_url=env["POSTROOM_DATABASE_URL"])
        )
        from tests.conftest import _truncate

        _truncate(app)
        app.close()


def test_list_show_preview(run) -> None:  # type: ignore[no-untyped-def]
    r = run("template", "list")
    assert r.exit_code == 0 and "run_finished" in r.output and "builtin" in r.output
    names = [t["name"] for t in json.loads(run("template", "list", "--json").output)]
    assert "password_reset" in names and "scheduled_summary" in names
    r = run("template", "show", "alert")
    assert "--- html ---" in r.output and "--- sample data ---" in r.output
    r = run("template", "preview", "run_finished")
    assert r.exit_code == 0
    assert r.output.startswith("Subject: nightly-regression: run failed (3 failed)")
    assert "Failed steps:" in r.output
    r = run("template", "preview", "run_finished", "--html")
    assert "<!DOCTYPE html>" in r.output
    r = run("template", "preview", "alert", "--json")
    assert json.loads(r.output)["subject"].startswith("[CRITICAL]")


def test_preview_on_given_data_and_a_render_failure(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data.yaml"
    data.write_text("process: p\nstatus: succeeded\n")
    r = run("template", "preview", "run_finished", "--data", str(data), "--json")
    assert r.exit_code == 0 and json.loads(r.output)["subject"] == "p: run succeeded"
    data.write_text("status: failed\n")
    r = run("template", "preview", "run_finished", "--data", str(data))
    assert r.exit_code == 1
    assert "error: Template 'run_finished' (subject, line 1): 'process' is undefined" in r.output


def test_apply_edit_history_delete(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    doc = tmp_path / "t.yaml"
    doc.write_text(
        "name: deploy_done\nsubject: 'Deployed {{ service }}'\n"
        "html: '<p>{{ service }} is live</p>'\nsample_data: {service: billing}\n"
    )
    r = run("template", "apply", "-f", str(doc))
    assert r.exit_code == 0 and "version 1" in r.output
    html = tmp_path / "t.html"
    html.write_text("<p>{{ service }} is <b>live</b> now</p>")
    r = run("template", "edit", "deploy_done", "--html", str(html), "--version", "1")
    assert r.exit_code == 0 and "version 2" in r.output
    r = run("template", "edit", "deploy_done", "--subject", "x", "--version", "1")
    assert r.exit_code == 1 and "changed by someone else" in r.output
    r = run("template", "preview", "deploy_done")
    assert "billing is live now" in r.output
    r = run("template", "history", "deploy_done", "--json")
    assert [v["version"] for v in json.loads(r.output)] == [2, 1]
    r = run("template", "show", "deploy_done", "--version", "1", "--json")
    assert json.loads(r.output)["html"] == "<p>{{ service }} is live</p>"
    r = run("template", "delete", "deploy_done")
    assert r.exit_code == 0
    assert run("template", "show", "deploy_done").exit_code == 1


def test_a_broken_template_is_refused_with_the_line(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.html"
    bad.write_text("<p>ok</p>\n<p>{{ ''.__class__.__mro__ }}</p>")
    r = run("template", "edit", "alert", "--html", str(bad))
    assert r.exit_code == 2
    assert "error: html: line 2: not allowed in templates" in r.output


def test_override_a_builtin_and_revert(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = run("template", "edit", "alert", "--subject", "ALERT {{ title }}", "--version", "0")
    assert r.exit_code == 0 and "version 1" in r.output
    assert "override" in run("template", "list").output
    r = run("template", "delete", "alert")
    assert "built-in is in force again" in r.output
    assert run("template", "delete", "alert").exit_code == 1


def test_subscriptions_and_events(run) -> None:  # type: ignore[no-untyped-def]
    r = run("subscription", "add", "--event", "run.*", "--to", "ops@x.test",
            "--filter", "status=failed,error", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    sub = json.loads(r.output)
    assert sub["template"] == "run_finished" and sub["filter"] == {"status": ["failed", "error"]}
    r = run("subscription", "add", "--event", "run.*", "--to", "boss@x.test",
            "--schedule", "0 8 * * 1-5", "--timezone", "Europe/Berlin")  # fmt: skip
    assert r.exit_code == 0 and "summary '0 8 * * 1-5' Europe/Berlin" in r.output
    r = run("subscription", "add", "--event", "run.*", "--to", "x@x.test", "--schedule", "0 8 *")
    assert r.exit_code == 2 and "error: schedule: must be a cron expression" in r.output
    listing = run("subscription", "list").output
    assert "ops@x.test" in listing and "status=failed,error" in listing
    # no profile exists: the delivery fails (exit 1), the digest collects
    r = run("events", "send", "run.failed", "--process", "p", "--set", "status=failed",
            "--set", "duration_s=12", "--json")  # fmt: skip
    assert r.exit_code == 1
    deliveries = json.loads(r.output)["deliveries"]
    assert [d["status"] for d in deliveries] == ["failed", "collected"]
    assert "no system default profile" in deliveries[0]["error"]
    events = json.loads(run("events", "list", "--json").output)
    assert events[0]["data"] == {"status": "failed", "duration_s": 12}
    assert run("events", "run-digests").output.startswith("No summary was due")
    assert run("events", "digests").output.startswith("No summaries yet")
    r = run("subscription", "remove", str(sub["id"]))
    assert r.exit_code == 0 and "Removed subscription" in r.output
    assert run("subscription", "show", str(sub["id"])).exit_code == 1
