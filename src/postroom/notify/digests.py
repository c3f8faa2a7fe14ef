"""Summaries: one mail per subscription and period, collecting the period's events.

Exactly once, with any number of callers: the summary's ``notify_digests`` row —
unique on (subscription, period_start) — its claim on the collected events and its
outbox message are one transaction. A second caller's insert waits for the first
one's commit and then fails on the unique constraint, so it does nothing.

Events are claimed by the time they were notified, ``< period end``, and only those
still unclaimed: an event committed late (or from a period nobody summarized, e.g.
while no worker ran) goes into the next summary instead of being lost or sent twice.
A summary that fails to render is recorded ``failed`` and gives its events back, so
the next period's summary carries them once the template is fixed.
"""

from __future__ import annotations

import builtins
import logging
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from postroom.db.tables import utcnow
from postroom.errors import NotFound, ValidationError
from postroom.notify.enqueue import Stager
from postroom.notify.render import TemplateError
from postroom.notify.schedule import period_ending
from postroom.notify.schemas import DeliveryStatus, DigestRead, DigestStatus
from postroom.notify.subscriptions import Subscriptions
from postroom.notify.tables import DigestRun, NotifyDelivery, NotifyEvent, Subscription
from postroom.notify.templates import Templates
from postroom.outbox.service import Outbox, SendRequest

__all__ = ["Digests"]

log = logging.getLogger("postroom.notify")

#: rows shown in one summary; the counts still cover every event
MAX_ROWS = 500


def _is_literal(pattern: str | None) -> bool:
    return pattern is not None and not any(c in pattern for c in "*?[")


def _read(row: DigestRun) -> DigestRead:
    return DigestRead(
        id=row.id, subscription_id=row.subscription_id, period_start=row.period_start,
        period_end=row.period_end, status=DigestStatus(row.status), events=row.events,
        outbox_id=row.outbox_id, error=row.error, created_at=row.created_at,
    )  # fmt: skip


class Digests:
    """Runs due summaries; lists past ones."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        outbox: Outbox,
        templates: Templates,
        subscriptions: Subscriptions,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._templates = templates
        self._subscriptions = subscriptions

    def run_due(self, now: datetime | None = None) -> builtins.list[DigestRead]:
        """Send the summary of every period that has ended by ``now`` and has none yet.

        Safe to call from many processes at once and as often as you like (every 30 s is
        plenty). Only the latest ended period of a subscription is summarized; events of
        periods missed while nothing ran go into it. Returns the summaries this call made
        (sent, empty or failed). Raises only database errors.
        """
        now = now or utcnow()
        with self._sessions() as s:
            subs = list(
                s.scalars(
                    select(Subscription)
                    .where(Subscription.enabled.is_(True), Subscription.schedule.is_not(None))
                    .order_by(Subscription.id)
                )
            )
        if subs:
            self._subscriptions.signing_key()
        made = []
        for sub in subs:
            assert sub.schedule is not None  # selected above
            try:
                start, end = period_ending(sub.schedule, sub.timezone, now)
            except (ValueError, KeyError) as exc:  # validated on save; the zone data changed?
                log.warning("subscription %s: cannot evaluate its schedule: %s", sub.id, exc)
                continue
            if end <= sub.created_at:
                continue  # that period ended before the subscription existed
            if self._exists(sub.id, start):
                continue
            run = self._run(sub, start, end)
            if run is not None:
                made.append(run)
        return made

    def _exists(self, subscription_id: int, start: datetime) -> bool:
        # a cheap read first: most calls find every period done and never take a write lock
        with self._sessions() as s:
            found = s.scalar(
                select(DigestRun.id).where(
                    DigestRun.subscription_id == subscription_id, DigestRun.period_start == start
                )
            )
        return found is not None

    def _run(self, sub: Subscription, start: datetime, end: datetime) -> DigestRead | None:
        with self._sessions() as s:
            run = DigestRun(subscription_id=sub.id, period_start=start, period_end=end,
                            status=DigestStatus.QUEUED.value)  # fmt: skip
            s.add(run)
            try:
                s.flush()
            except IntegrityError:
                s.rollback()  # another caller made this period's summary (or it was removed)
                return None
            s.execute(
                update(NotifyDelivery)
                .where(
                    NotifyDelivery.subscription_id == sub.id,
                    NotifyDelivery.status == DeliveryStatus.COLLECTED.value,
                    NotifyDelivery.created_at < end,
                )
                .values(status=DeliveryStatus.SUMMARIZED.value, digest_id=run.id)
            )
            items = s.execute(
                select(NotifyDelivery.created_at, NotifyEvent.event, NotifyEvent.process,
                       NotifyEvent.data)
                .join(NotifyEvent, NotifyEvent.id == NotifyDelivery.event_id)
                .where(NotifyDelivery.digest_id == run.id)
                .order_by(NotifyDelivery.created_at, NotifyDelivery.id)
            ).all()  # fmt: skip
            run.events = len(items)
            if not items and not sub.send_empty:
                run.status = DigestStatus.EMPTY.value
            else:
                self._send(s, sub, run, [tuple(i) for i in items])
            s.commit()
            return _read(run)

    def _send(self, s: Session, sub: Subscription, run: DigestRun, items: list[Any]) -> None:
        context = self._context(sub, run, items)
        try:
            rendered = self._templates.render(sub.template, context, session=s)
            message = self._subscriptions.message(sub, rendered, event=f"digest:{sub.event}")
            # a summary over one named process goes through that process's profile
            process = sub.process if _is_literal(sub.process) else None
            run.outbox_id = Stager(self._outbox, s).add(SendRequest(message, process=process))
        except (TemplateError, NotFound, ValidationError) as exc:
            # give the events back: the next summary carries them once this is fixed
            s.execute(
                update(NotifyDelivery)
                .where(NotifyDelivery.digest_id == run.id)
                .values(status=DeliveryStatus.COLLECTED.value, digest_id=None)
            )
            run.status = DigestStatus.FAILED.value
            run.error = exc.message
            log.warning("summary of subscription %s failed: %s", sub.id, exc.message)

    def _context(self, sub: Subscription, run: DigestRun, items: list[Any]) -> dict[str, Any]:
        runs = []
        for at, event, process, data in items:
            runs.append(
                {
                    "at": at.isoformat(), "event": event, "process": process,
                    "status": str(data.get("status") or event.rsplit(".", 1)[-1]),
                    "duration_s": data.get("duration_s"), "counts": data.get("counts"),
                    "link": data.get("link"), "data": data,
                }
            )  # fmt: skip
        by_status = Counter(r["status"] for r in runs)
        first = items[0][0] if items else run.period_start
        return {
            **self._subscriptions.context(sub),
            "event": sub.event,
            "process": sub.process,
            "period": {
                "start": min(first, run.period_start).isoformat(),
                "end": run.period_end.isoformat(),
                "timezone": sub.timezone,
            },
            "runs": runs[-MAX_ROWS:],
            "total": len(runs),
            "hidden": max(0, len(runs) - MAX_ROWS),
            "by_status": dict(sorted(by_status.items())),
        }

    def list(self, *, subscription_id: int | None = None, limit: int = 50) -> list[DigestRead]:
        """Past summaries, newest first."""
        q = select(DigestRun).order_by(DigestRun.id.desc()).limit(max(1, min(limit, 1000)))
        if subscription_id is not None:
            q = q.where(DigestRun.subscription_id == subscription_id)
        with self._sessions() as s:
            return [_read(r) for r in s.scalars(q)]
