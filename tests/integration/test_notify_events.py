"""Events fan out to the right subscribers through the right profile (real outbox + worker)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from postroom import Postroom
from postroom.db.tables import OutboxMessage
from postroom.errors import NotFound, ValidationError
from postroom.notify.schemas import DeliveryStatus
from postroom.notify.templates import Templates
from tests.integration.smtp_fakes import raw_sink
from tests.integration.test_notify_support import (
    PUBLIC_URL,
    drain,
    notifier,
    parse,
    parts,
    sink_profile,
)

SCRIPT = "<script>alert(1)</script>"
RUN = {
    "status": "failed",
    "duration_s": 757,
    "counts": {"total": 10, "passed": 9, "failed": 1},
    "failed_steps": [{"name": SCRIPT, "error": "boom"}],
    "link": "https://automation.test/runs/4711",
}


def outbox_count(app: Postroom) -> int:
    with app.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


def test_event_reaches_the_right_subscribers_through_the_bound_profile(app: Postroom) -> None:
    n = notifier(app)
    with raw_sink() as sink:
        sink_profile(app, sink.port, "system", "system@postroom.test")
        sink_profile(app, sink.port, "qa", "qa@postroom.test")
        app.set_default("system")
        app.bind("nightly-regression", "qa")
        subs = n.subscriptions
        ops = subs.add(
            {"event": "run.*", "address": "ops@x.test", "filter": {"status": ["failed"]}}
        )
        dev = subs.add(
            {"event": "run.failed", "process": "nightly-*", "address": "Dev <dev@x.test>"}
        )
        subs.add({"event": "run.failed", "process": "crm-sync", "address": "crm@x.test"})
        subs.add({"event": "alert.*", "address": "alerts@x.test"})
        digest = subs.add({"event": "run.*", "address": "boss@x.test", "schedule": "0 8 * * *"})

        result = n.notify("run.failed", process="nightly-regression", data=RUN)
        got = {d.subscription_id: d.status for d in result.deliveries}
        assert got == {ops.id: "queued", dev.id: "queued", digest.id: "collected"}
        # filtered out for ops; the crm subscription is for another process
        quiet = n.notify("run.succeeded", process="crm-sync", data={"status": "succeeded"})
        assert [(d.subscription_id, d.status) for d in quiet.deliveries] == [
            (digest.id, "collected")
        ]
        drain(app)

    assert sorted(rcpts[0] for _, rcpts in sink.envelopes) == ["dev@x.test", "ops@x.test"]
    assert {sender for sender, _ in sink.envelopes} == {"qa@postroom.test"}  # the binding
    for raw in sink.data:
        m = parse(raw)
        assert m["Subject"] == "nightly-regression: run failed (1 failed)"
        assert m["Auto-Submitted"] == "auto-generated"
        assert m["X-Postroom-Event"] == "run.failed"
        assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # a long value is folded after the colon; unfolded, the whitespace is insignificant
        assert m["List-Unsubscribe"].strip().startswith(f"<{PUBLIC_URL}/unsubscribe/")
        html, text = parts(m)
        assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert f"- {SCRIPT}: boom" in text and "12 min 37 s" in text
        assert "https://automation.test/runs/4711" in text


def test_unbound_process_uses_the_system_default(app: Postroom) -> None:
    n = notifier(app)
    with raw_sink() as sink:
        sink_profile(app, sink.port, "system", "system@postroom.test")
        sink_profile(app, sink.port, "qa", "qa@postroom.test")
        app.set_default("system")
        app.bind("nightly-regression", "qa")
        n.subscriptions.add({"event": "alert.*", "address": "ops@x.test"})
        n.notify("alert.disk", process="crm-sync", data={"severity": "warning", "title": "Disk"})
        drain(app)
    assert sink.envelopes == [("system@postroom.test", ["ops@x.test"])]
    m = parse(sink.data[0])
    assert m["Subject"] == "[WARNING] Disk" and m["Auto-Submitted"] == "auto-generated"


def test_a_template_failing_on_real_data_is_a_recorded_failure(app: Postroom) -> None:
    sink_profile(app, 2525, "system", "system@postroom.test")
    app.set_default("system")
    Templates(app.sessions).create(
        {"name": "fragile", "subject": "Run {{ run.name }}", "text": "{{ run.name }}",
         "sample_data": {"run": {"name": "sample"}}}
    )  # fmt: skip
    n = notifier(app)
    bad = n.subscriptions.add({"event": "run.failed", "address": "a@x.test", "template": "fragile"})
    good = n.subscriptions.add({"event": "run.failed", "address": "b@x.test"})
    result = n.notify("run.failed", process="p", data={"status": "failed"})
    by_sub = {d.subscription_id: d for d in result.deliveries}
    assert by_sub[good.id].status == DeliveryStatus.QUEUED and by_sub[good.id].outbox_id
    failed = by_sub[bad.id]
    assert failed.status == DeliveryStatus.FAILED and failed.outbox_id is None
    assert failed.error == "Template 'fragile' (subject, line 1): 'run' is undefined"
    # it stays visible afterwards
    [event] = n.events(limit=1)
    assert [d.status for d in event.deliveries] == ["failed", "queued"]


def test_no_profile_at_all_is_a_recorded_failure(app: Postroom) -> None:
    n = notifier(app)
    n.subscriptions.add({"event": "run.failed", "address": "a@x.test"})
    [d] = n.notify("run.failed", process="p", data={"status": "failed"}).deliveries
    assert d.status == "failed" and d.error is not None
    assert d.error.startswith("profile: process 'p' has no binding")
    assert outbox_count(app) == 0


def test_idempotency_key_returns_the_first_result(app: Postroom) -> None:
    sink_profile(app, 2525, "system", "system@postroom.test")
    app.set_default("system")
    n = notifier(app)
    n.subscriptions.add({"event": "run.failed", "address": "a@x.test"})
    first = n.notify("run.failed", process="p", data=RUN, idempotency_key="run-4711")
    again = n.notify("run.failed", process="p", data=RUN, idempotency_key="run-4711")
    assert again == first and outbox_count(app) == 1


def test_bad_arguments_are_refused(app: Postroom) -> None:
    n = notifier(app)
    with pytest.raises(ValidationError) as exc:
        n.notify("run failed")
    assert exc.value.field == "event"
    with pytest.raises(ValidationError) as exc:
        n.notify("run.failed", data={"x": object()})
    assert exc.value.field == "data"
    with pytest.raises(NotFound):
        n.subscriptions.add({"event": "run.failed", "address": "a@x.test", "template": "nope"})
    with pytest.raises(ValidationError) as exc:
        n.subscriptions.add({"event": "deploy.done", "address": "a@x.test"})
    assert exc.value.field == "template"


def test_unsubscribe_token_works_once_and_refuses_tampering(app: Postroom) -> None:
    n = notifier(app)
    sub = n.subscriptions.add({"event": "run.*", "address": "a@x.test"})
    other = n.subscriptions.add({"event": "run.*", "address": "b@x.test"})
    with app.sessions() as s:
        from postroom.notify.tables import Subscription

        row = s.get(Subscription, sub.id)
        assert row is not None
        url = n.subscriptions.unsubscribe_url(row)
    assert url is not None and url.startswith(f"{PUBLIC_URL}/unsubscribe/{sub.id}.")
    token = url.rsplit("/", 1)[1]
    head, mac = token.split(".")
    tampered = [f"{other.id}.{mac}", f"{head}.{mac[::-1]}", f"{head}.{mac[:-1]}", "x", ""]
    for bad in tampered:
        with pytest.raises(NotFound, match="not valid"):
            n.unsubscribe(bad)
    removed = n.unsubscribe(token)
    assert removed.id == sub.id and removed.address == "a@x.test"
    with pytest.raises(NotFound, match="not valid"):
        n.unsubscribe(token)
    assert [s.id for s in n.subscriptions.list()] == [other.id]
    assert app.audit.list(target_type="subscription")[0].actor == "unsubscribe-link"


def test_unsubscribe_key_is_shared_by_every_process(app: Postroom) -> None:
    a, b = notifier(app), notifier(app)
    sub = a.subscriptions.add({"event": "run.*", "address": "a@x.test"})
    with app.sessions() as s:
        from postroom.notify.tables import Subscription

        row = s.get(Subscription, sub.id)
        assert row is not None
        token = a.subscriptions.token(row)
    assert b.unsubscribe(token).id == sub.id


def test_without_public_url_no_unsubscribe_header(app: Postroom) -> None:
    n = notifier(app, public_url=None)
    with raw_sink() as sink:
        sink_profile(app, sink.port, "system", "system@postroom.test")
        app.set_default("system")
        n.subscriptions.add({"event": "run.*", "address": "a@x.test"})
        n.notify("run.failed", process="p", data=RUN)
        drain(app)
    m = parse(sink.data[0])
    assert m["List-Unsubscribe"] is None and m["Auto-Submitted"] == "auto-generated"


def test_system_mail_goes_through_the_default_profile(app: Postroom) -> None:
    n = notifier(app)
    with raw_sink() as sink:
        sink_profile(app, sink.port, "system", "system@postroom.test")
        app.set_default("system")
        id = n.send_system_mail(
            "password_reset", to="eve@x.test", data={"reset_url": "https://p.test/r/abc"}
        )
        drain(app)
    assert app.outbox.get(id).status == "sent"
    m = parse(sink.data[0])
    assert m["Subject"] == "Reset your postroom password" and m["List-Unsubscribe"] is None
    assert "https://p.test/r/abc" in parts(m)[1]


def test_subscriptions_update_and_remove(app: Postroom) -> None:
    n = notifier(app)
    sub = n.subscriptions.add({"event": "run.*", "address": "a@x.test"})
    assert sub.template == "run_finished" and sub.mode == "immediate"
    changed = n.subscriptions.update(sub.id, {"schedule": "0 8 * * 1-5", "template": None})
    assert changed.mode == "digest" and changed.template == "scheduled_summary"
    assert changed.next_digest_at is not None
    n.subscriptions.remove(sub.id)
    with pytest.raises(NotFound):
        n.subscriptions.get(sub.id)


def test_a_subscription_names_every_problem_at_once(app: Postroom) -> None:
    subs = app.notifications.subscriptions
    with pytest.raises(ValidationError) as exc:
        subs.add({"event": "no good!", "address": "not an address", "template": "nope"})
    fields = {e.field for e in exc.value.errors}
    assert fields == {"event", "address", "template"}, exc.value.errors
    # a missing default template is named with the other problems too
    with pytest.raises(ValidationError) as exc:
        subs.add({"event": "custom.thing", "address": "not an address"})
    assert {e.field for e in exc.value.errors} == {"address", "template"}
    # alone, an unknown template is still "not found"
    with pytest.raises(NotFound):
        subs.add({"event": "run.failed", "address": "a@x.test", "template": "nope"})
