"""Summaries: one per subscription and period, even with many callers at once."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from postroom import Postroom
from postroom.db.tables import OutboxMessage, utcnow
from postroom.notify.digests import Digests
from postroom.notify.events import Notifier
from postroom.notify.schemas import DigestRead, DigestStatus
from postroom.notify.tables import DigestRun
from postroom.notify.templates import Templates
from tests.integration.smtp_fakes import raw_sink
from tests.integration.test_notify_support import drain, notifier, parse, parts, sink_profile

DAILY = "0 8 * * *"


def setup(app: Postroom, **sub: Any) -> tuple[Notifier, int]:
    sink_profile(app, 2525, "system", "system@postroom.test")
    app.set_default("system")
    n = notifier(app)
    created = n.subscriptions.add(
        {"event": "run.*", "address": "boss@x.test", "schedule": DAILY, **sub}
    )
    return n, created.id


def counts(app: Postroom) -> tuple[int, int]:
    with app.sessions() as s:
        runs = int(s.scalar(select(func.count()).select_from(DigestRun)) or 0)
        mails = int(s.scalar(select(func.count()).select_from(OutboxMessage)) or 0)
    return runs, mails


def test_summary_collects_the_period_and_is_sent_once(app: Postroom) -> None:
    n, sub = setup(app)
    for status in ("succeeded", "failed", "succeeded"):
        n.notify(f"run.{status}", process="nightly", data={"status": status, "duration_s": 60})
    assert counts(app) == (0, 0)  # nothing goes out per event
    assert n.run_due_digests() == []  # the period has not ended yet
    later = utcnow() + timedelta(days=1)
    [made] = n.run_due_digests(later)
    assert (made.subscription_id, made.status, made.events) == (sub, DigestStatus.QUEUED, 3)
    assert made.period_end <= later and made.period_end - made.period_start == timedelta(days=1)
    same_period = made.period_end + timedelta(hours=23, minutes=59)
    assert n.run_due_digests(later) == [] and n.run_due_digests(same_period) == []
    assert counts(app) == (1, 1)
    assert app.outbox.get(made.outbox_id or 0).subject == "Summary: 3 runs, 1 failed"
    # the next period saw nothing: recorded, but no mail
    [empty] = n.run_due_digests(made.period_end + timedelta(days=1))
    assert (empty.status, empty.events, empty.outbox_id) == (DigestStatus.EMPTY, 0, None)
    assert counts(app) == (2, 1)
    # the events now point at their summary
    assert {d.status for e in n.events() for d in e.deliveries} == {"summarized"}


def test_send_empty_sends_a_summary_of_nothing(app: Postroom) -> None:
    n, _ = setup(app, send_empty=True)
    [made] = n.run_due_digests(utcnow() + timedelta(days=1))
    assert made.status == DigestStatus.QUEUED and made.events == 0
    assert app.outbox.get(made.outbox_id or 0).subject == "Summary: 0 runs"


def test_period_before_the_subscription_existed_is_skipped(app: Postroom) -> None:
    n, _ = setup(app, send_empty=True)
    assert n.run_due_digests(utcnow()) == []


def test_concurrent_callers_make_one_summary_per_period(
    app: Postroom, monkeypatch: pytest.MonkeyPatch
) -> None:
    # skip the cheap "already done?" read, so every caller races for the insert and only
    # the unique (subscription, period_start) decides
    monkeypatch.setattr(Digests, "_exists", lambda *_: False)
    n, sub = setup(app)
    n.notify("run.failed", process="nightly", data={"status": "failed"})
    # several separate service objects, as in several processes
    callers = [notifier(app) for _ in range(8)]
    barrier = threading.Barrier(len(callers))
    results: list[list[DigestRead]] = []
    errors: list[BaseException] = []
    when = utcnow() + timedelta(days=1)

    def call(service: Notifier) -> None:
        try:
            barrier.wait(10)
            results.append(service.run_due_digests(when))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(c,)) for c in callers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    made = [d for r in results for d in r]
    assert len(made) == 1 and made[0].subscription_id == sub and made[0].events == 1
    assert counts(app) == (1, 1)


def test_a_failing_summary_is_recorded_and_gives_its_events_back(app: Postroom) -> None:
    templates = Templates(app.sessions)
    templates.create(
        {"name": "picky", "subject": "{{ runs[0].data.owner }}", "text": "x",
         "sample_data": {"runs": [{"data": {"owner": "ann"}}]}}
    )  # fmt: skip
    n, sub = setup(app, template="picky")
    n.notify("run.failed", process="nightly", data={"status": "failed"})
    day = utcnow() + timedelta(days=1)
    [failed] = n.run_due_digests(day)
    assert failed.status == DigestStatus.FAILED and failed.outbox_id is None
    assert failed.error is not None and failed.error.startswith("Template 'picky' (subject")
    assert n.run_due_digests(day) == []  # a failed period is not retried over and over
    # fixed: the next period carries the event that the failed one gave back
    templates.update("picky", {"subject": "Summary of {{ total }}", "sample_data": {"total": 1}})
    [ok] = n.run_due_digests(failed.period_end + timedelta(days=1))
    assert ok.status == DigestStatus.QUEUED and ok.events == 1
    assert app.outbox.get(ok.outbox_id or 0).subject == "Summary of 1"
    assert [d.status for d in n.digests.list(subscription_id=sub)] == ["queued", "failed"]


def test_summary_arrives_with_its_table(app: Postroom) -> None:
    n = notifier(app)
    with raw_sink() as sink:
        sink_profile(app, sink.port, "system", "system@postroom.test")
        app.set_default("system")
        n.subscriptions.add(
            {"event": "run.*", "address": "boss@x.test", "schedule": DAILY,
             "timezone": "Europe/Berlin"}
        )  # fmt: skip
        n.notify("run.failed", process="nightly", data={"status": "failed", "duration_s": 757,
                 "link": "https://automation.test/runs/1"})  # fmt: skip
        n.notify("run.succeeded", process="<crm>", data={"status": "succeeded"})
        n.run_due_digests(utcnow() + timedelta(days=1))
        drain(app)
    m = parse(sink.data[0])
    assert m["Subject"] == "Summary: 2 runs, 1 failed"
    assert m["Auto-Submitted"] == "auto-generated" and m["List-Unsubscribe"]
    html, text = parts(m)
    assert "nightly" in text and "12 min 37 s" in text and "<crm>" in text
    assert "&lt;crm&gt;" in html and "<crm>" not in html
    assert "https://automation.test/runs/1" in html and "CET" in text or "CEST" in text
