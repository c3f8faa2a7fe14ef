"""`outbox list --search` and bulk `outbox retry|cancel` with filters (issue 24, deliver
item 2), on SQLite and PostgreSQL: the count is shown and confirmed (or --yes), one audit
entry, bad filters all reported with exit 2."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import cli
from postroom.settings import Settings


@pytest.fixture
def run(tmp_path: Path, backend: str, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    env = {"POSTROOM_DATA_DIR": str(tmp_path / "data")}
    if backend == "postgresql":
        env["POSTROOM_DATABASE_URL"] = request.getfixturevalue("pg_schema_url")
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
        result = runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)
        assert "Traceback" not in result.output
        return result

    def app() -> Postroom:
        return Postroom.open(
            settings=Settings(
                data_dir=tmp_path / "data", database_url=env.get("POSTROOM_DATABASE_URL")
            )
        )

    invoke.app = app  # type: ignore[attr-defined]
    yield invoke
    if backend == "postgresql":
        from tests.conftest import _truncate

        pr = app()
        _truncate(pr)
        pr.close()


def queue(run, profile: str, to: str, subject: str) -> int:  # type: ignore[no-untyped-def]
    r = run("send", "--profile", profile, "--to", to, "--subject", subject, "--text", "x", "--json")
    assert r.exit_code == 0, r.output
    return int(json.loads(r.output)["id"])


def statuses(app: Postroom, ids: list[int]) -> list[str]:
    return [app.outbox.get(i).status.value for i in ids]


def test_search_and_bulk_retry_with_count_confirmation_and_audit(run) -> None:  # type: ignore[no-untyped-def]
    for name in ("sink", "billing"):
        r = run("profile", "add", name, "--smtp-host", "127.0.0.1", "--smtp-port", "1",
                "--security", "none", "--from-address", "robot@postroom.test")  # fmt: skip
        assert r.exit_code == 0, r.output
    sink = [queue(run, "sink", f"u{n}@postroom.test", f"Report {n}") for n in range(3)]
    bill = queue(run, "billing", "payer@postroom.test", "Invoice")
    app = run.app()
    try:
        with app.engine.begin() as conn:
            conn.execute(text("UPDATE outbox_messages SET status = 'failed'"))
            conn.execute(
                text("UPDATE outbox_messages SET created_at = :c WHERE id = :id"),
                {"c": datetime.now(UTC).replace(tzinfo=None) - timedelta(days=30), "id": sink[0]},
            )
        listed = json.loads(run("outbox", "list", "--search", "PAYER@", "--json").output)
        assert [m["id"] for m in listed] == [bill]
        assert "No messages." in run("outbox", "list", "--search", "nothing-like-it").output
        since = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        args = ("outbox", "retry", "--status", "failed", "--profile", "sink", "--since", since)

        r = run(*args, input="n\n")  # declined: nothing changes
        assert r.exit_code == 1 and "Retry 2 message(s)?" in r.output, r.output
        assert statuses(app, sink + [bill]) == ["failed"] * 4

        r = run(*args, input="y\n")
        assert r.exit_code == 0 and "2 message(s) queued again." in r.output, r.output
        assert statuses(app, sink + [bill]) == ["failed", "queued", "queued", "failed"]
        entries = [e for e in app.audit.list(limit=20) if e.action == "bulk_retry"]
        assert len(entries) == 1 and entries[0].actor == "cli"
        assert entries[0].details["count"] == 2
        assert entries[0].details["filter"]["profile"] == "sink"

        r = run("outbox", "cancel", "--search", "report", "--yes")
        assert r.exit_code == 0 and "2 message(s) cancelled." in r.output, r.output
        assert statuses(app, sink) == ["failed", "cancelled", "cancelled"]
        r = run("outbox", "cancel", "--search", "report", "--yes")
        assert r.exit_code == 0 and "No matching message can be cancelled." in r.output
        # one message by id still works
        assert run("outbox", "retry", str(bill)).exit_code == 0
        assert statuses(app, [bill]) == ["queued"]
    finally:
        app.close()


def test_bad_filters_exit_2_naming_every_field(run) -> None:  # type: ignore[no-untyped-def]
    r = run("outbox", "retry", "--status", "nope", "--since", "yesterday", "--search", "x" * 300)
    assert r.exit_code == 2
    for field in ("status", "since", "search"):
        assert field in r.output, r.output
    r = run("outbox", "retry", "--status", "sent", "--yes")
    assert r.exit_code == 2 and "status" in r.output
    assert run("outbox", "retry").exit_code == 2  # neither an id nor filters
    assert run("outbox", "cancel", "3", "--status", "queued").exit_code == 2
    assert run("outbox", "list", "--until", "2026-01-01T00:00").exit_code == 2
