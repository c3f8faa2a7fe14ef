"""The Prometheus exposition reads the outbox on both databases."""

from __future__ import annotations

import asyncio

from postroom import Postroom
from postroom.outbox.metrics import render_metrics
from postroom.outbox.worker import Worker
from tests.integration.smtp_fakes import raw_sink


def test_metrics_count_sent_failed_and_depth(app: Postroom) -> None:
    with raw_sink(rcpt_reply={"gone@postroom.test": "550 5.1.1 gone"}) as sink:
        app.profiles.create(
            {"name": "QA alerts", "smtp": {"host": "127.0.0.1", "port": sink.port, "security": "none"},
             "sender": {"from_address": "qa@postroom.test"}}
        )  # fmt: skip
        for to in ("bob@postroom.test", "bob@postroom.test", "gone@postroom.test"):
            app.send({"to": [to], "subject": "s", "text": "t"}, profile="QA alerts")
        asyncio.run(Worker(app, poll_s=0.05).run(drain=True))
    app.send({"to": ["x@postroom.test"], "subject": "s", "text": "t"}, profile="QA alerts")
    text = render_metrics(app.sessions)
    assert 'postroom_messages_sent_total{profile="QA alerts",reply_class="2xx"} 2' in text
    assert 'postroom_messages_failed_total{profile="QA alerts",reply_class="5xx"} 1' in text
    assert "postroom_queue_depth 1" in text
    assert 'postroom_delivery_latency_seconds_bucket{le="+Inf"} 2' in text
    assert "postroom_oldest_due_message_age_seconds" in text
