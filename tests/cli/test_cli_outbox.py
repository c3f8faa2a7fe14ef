"""`postroom send`, `worker --drain` and `outbox list|show|retry|cancel`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import cli
from tests.conftest import clear_default
from tests.integration.smtp_fakes import raw_sink


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {"POSTROOM_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
        result = runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)
        assert "Traceback" not in result.output
        return result

    return invoke


def add_profile(run, port: int) -> None:  # type: ignore[no-untyped-def]
    r = run("profile", "add", "sink", "--smtp-host", "127.0.0.1", "--smtp-port", str(port),
            "--security", "none", "--from-address", "robot@postroom.test")  # fmt: skip
    assert r.exit_code == 0, r.output


def test_send_wait_json_and_outbox_show(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    attachment = tmp_path / "report.csv"
    attachment.write_text("run,status\n1,ok\n")
    with raw_sink() as sink:
        add_profile(run, sink.port)
        r = run("send", "--profile", "sink", "--to", "bob@postroom.test", "--subject", "Nightly",
                "--text", "All green", "--attach", str(attachment), "--header", "X-Run-Id: 42",
                "--wait", "--json")  # fmt: skip
        assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    assert m["status"] == "sent" and m["history"][0]["code"] == 250
    assert b"X-Run-Id: 42" in sink.data[0] and b'filename="report.csv"' in sink.data[0]
    listed = json.loads(run("outbox", "list", "--json").output)
    assert [x["id"] for x in listed] == [m["id"]] and listed[0]["status"] == "sent"
    assert "attempt" in run("outbox", "show", str(m["id"])).output


def test_send_bad_input_exits_2_and_queues_nothing(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    add_profile(run, 1)
    r = run("send", "--profile", "sink", "--to", "x)<y@z.test>", "--text", "t")
    assert r.exit_code == 2 and "to" in r.output
    # the first profile became the default (issue 22 item 4); without one, nothing resolves
    with Postroom.open(tmp_path / "data") as app:
        clear_default(app)
    assert run("send", "--to", "a@b.test", "--text", "t").exit_code == 2  # no profile, no default
    assert (
        run("send", "--profile", "sink", "--to", "a@b.test", "--header", "nocolon").exit_code == 2
    )
    assert (
        run(
            "send", "--profile", "sink", "--to", "a@b.test", "--text", "t", "--send-at", "soon"
        ).exit_code
        == 2
    )
    assert json.loads(run("outbox", "list", "--json").output) == []


def test_worker_drain_cancel_retry(run) -> None:  # type: ignore[no-untyped-def]
    with raw_sink() as sink:
        add_profile(run, sink.port)
        out = run(
            "send", "--profile", "sink", "--to", "bob@postroom.test", "--text", "t", "--json"
        ).output
        id = json.loads(out)["id"]
        assert run("outbox", "cancel", str(id)).exit_code == 0
        assert run("outbox", "cancel", str(id)).exit_code == 1
        assert run("outbox", "retry", str(id)).exit_code == 0
        r = run("worker", "--drain")
        assert r.exit_code == 0 and "1 sent" in r.output
    assert run("outbox", "show", "999").exit_code == 1
    assert run("outbox", "list", "--status", "nonsense").exit_code == 2


def test_send_to_a_utf8_address_is_queued(run) -> None:  # type: ignore[no-untyped-def]
    add_profile(run, 1)
    r = run("send", "--profile", "sink", "--to", "用户@example.test", "--text", "t", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["status"] == "queued"


def test_since_and_until_take_a_date_like_the_web(run) -> None:  # type: ignore[no-untyped-def]
    add_profile(run, 1)
    sent = json.loads(run("send", "--profile", "sink", "--to", "a@b.test", "--text", "t",
                          "--json").output)  # fmt: skip
    from datetime import UTC, datetime

    today = datetime.now(UTC).date().isoformat()
    r = run("outbox", "list", "--since", today, "--until", today, "--json")
    assert r.exit_code == 0, r.output
    assert [m["id"] for m in json.loads(r.output)] == [sent["id"]]  # --until includes the day
    r = run("outbox", "list", "--since", "2000-01-01", "--until", "2000-01-02", "--json")
    assert r.exit_code == 0 and json.loads(r.output) == []
    assert run("outbox", "list", "--since", "2026-01-01T08:00Z").exit_code == 0
    r = run("outbox", "list", "--since", "yesterday")
    assert r.exit_code == 2 and "YYYY-MM-DD" in r.output


def test_exit_codes_follow_the_readme(run) -> None:  # type: ignore[no-untyped-def]
    # 1: the thing failed (not found, a conflict); 2: bad input
    add_profile(run, 1)
    r = run("profile", "add", "sink", "--smtp-host", "127.0.0.1", "--security", "none",
            "--from-address", "robot@postroom.test")  # fmt: skip
    assert r.exit_code == 1 and "already exists" in r.output  # a conflict
    r = run("send", "--profile", "Nope", "--to", "a@b.test", "--text", "t")
    assert r.exit_code == 1 and "no profile named 'Nope'" in r.output  # not found
    assert run("profile", "test", "Nope").exit_code == 1  # the same as send
    r = run("send", "--profile", "Nope", "--to", "x)<y@z.test>", "--text", "t")
    assert r.exit_code == 2  # bad input as well as a missing profile: bad input wins


def test_outbox_list_never_cuts_an_address(run) -> None:  # type: ignore[no-untyped-def]
    add_profile(run, 1)
    to = ["first.recipient@example.org", "second.recipient@example.org", "third@example.org"]
    args = [a for t in to for a in ("--to", t)]
    r = run("send", "--profile", "sink", *args, "--subject",
            "A rather long subject line about the nightly reconciliation run", "--text", "t")  # fmt: skip
    assert r.exit_code == 0, r.output
    out = run("outbox", "list").output
    assert "first.recipient@example.org +2 more" in out, out
    assert "second.recipient@example.or" not in out  # no half address
    assert "A rather long subject line about the…" in out, out
