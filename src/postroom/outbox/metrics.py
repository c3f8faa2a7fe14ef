"""Prometheus metrics of the outbox, read from the database at scrape time.

Counting from the database (not in-process counters) makes the numbers the same whichever
`postroom serve` process is scraped, and right across any number of workers.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, case, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from postroom.db.tables import READY_CONDITION, OutboxAttempt, OutboxMessage, utcnow
from postroom.outbox.schemas import DUE_STATES, OutboxStatus

__all__ = ["LATENCY_BUCKETS_S", "render_metrics"]

LATENCY_BUCKETS_S = (0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _reply_class(code: int | None) -> str:
    return "none" if code is None else f"{code // 100}xx"


def render_metrics(sessions: sessionmaker[Session]) -> str:
    """The text exposition format (version 0.0.4)."""
    lines: list[str] = []
    with sessions() as s:
        attempts = s.execute(
            select(
                OutboxMessage.profile_name, OutboxAttempt.outcome, OutboxAttempt.code, func.count()
            )
            .join(OutboxMessage, OutboxMessage.id == OutboxAttempt.outbox_id)
            .group_by(OutboxMessage.profile_name, OutboxAttempt.outcome, OutboxAttempt.code)
        ).all()
        depth = s.execute(
            select(OutboxMessage.profile_name, OutboxMessage.status, func.count()).group_by(
                OutboxMessage.profile_name, OutboxMessage.status
            )
        ).all()
        oldest = s.scalar(
            # READY_CONDITION literally: the planner then reads the small ready index
            select(func.min(OutboxMessage.due_at)).where(
                text(READY_CONDITION), OutboxMessage.due_at <= utcnow()
            )
        )
        seconds: ColumnElement[Any] = func.extract(
            "epoch", OutboxMessage.sent_at - OutboxMessage.created_at
        )
        if s.get_bind().dialect.name == "sqlite":
            seconds = (
                func.julianday(OutboxMessage.sent_at) - func.julianday(OutboxMessage.created_at)
            ) * 86400.0
        buckets = s.execute(
            select(
                *(func.sum(case((seconds <= b, 1), else_=0)) for b in LATENCY_BUCKETS_S),
                func.count(),
                func.coalesce(func.sum(seconds), 0.0),
            ).where(
                OutboxMessage.status == OutboxStatus.SENT.value, OutboxMessage.sent_at.is_not(None)
            )
        ).one()

    totals: dict[tuple[str, str, str], int] = {}
    for profile, outcome, code, n in attempts:
        metric = {"sent": "sent", "permanent": "failed", "transient": "retried"}.get(
            outcome, outcome
        )
        key = (metric, profile, _reply_class(code))
        totals[key] = totals.get(key, 0) + int(n)
    for metric, help_text in (
        ("sent", "Messages the server accepted."),
        ("failed", "Attempts that failed permanently (5xx)."),
        ("retried", "Attempts that failed temporarily and will be retried."),
    ):
        name = f"postroom_messages_{metric}_total"
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for (m, profile, reply), n in sorted(totals.items()):
            if m == metric:
                lines.append(f'{name}{{profile="{_label(profile)}",reply_class="{reply}"}} {n}')
    lines += ["# HELP postroom_outbox_messages Messages in the outbox by status.",
              "# TYPE postroom_outbox_messages gauge"]  # fmt: skip
    for profile, status, n in sorted(depth):
        lines.append(
            f'postroom_outbox_messages{{profile="{_label(profile)}",status="{status}"}} {n}'
        )
    due = sum(int(n) for _, status, n in depth if status in DUE_STATES)
    lines += ["# HELP postroom_queue_depth Messages waiting to be sent (queued or retrying).",
              "# TYPE postroom_queue_depth gauge", f"postroom_queue_depth {due}"]  # fmt: skip
    age = 0.0
    if oldest is not None:
        age = max(0.0, (utcnow() - oldest).total_seconds())
    lines += ["# HELP postroom_oldest_due_message_age_seconds How long the oldest due message has waited.",
              "# TYPE postroom_oldest_due_message_age_seconds gauge",
              f"postroom_oldest_due_message_age_seconds {age:.3f}"]  # fmt: skip
    name = "postroom_delivery_latency_seconds"
    lines += [
        f"# HELP {name} Time from enqueue to the server's acceptance.",
        f"# TYPE {name} histogram",
    ]
    for bound, n in zip(LATENCY_BUCKETS_S, buckets[: len(LATENCY_BUCKETS_S)], strict=True):
        lines.append(f'{name}_bucket{{le="{bound}"}} {int(n or 0)}')
    count, total = int(buckets[-2] or 0), float(buckets[-1] or 0.0)
    lines += [
        f'{name}_bucket{{le="+Inf"}} {count}',
        f"{name}_count {count}",
        f"{name}_sum {total:.6f}",
    ]
    return "\n".join(lines) + "\n"
