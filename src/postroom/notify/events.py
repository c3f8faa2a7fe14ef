"""Events → notifications: match subscriptions, render, and queue in one transaction.

``notify("run.failed", process="nightly", data={...})`` stores the event, and for every
enabled subscription it reaches either renders the subscription's template and stages
the message in the outbox, or — for summary subscriptions — collects the event for the
next summary. Everything commits together. A template that fails on this event's data,
or a message the outbox refuses (no profile, a bad value in a header), does not stop
the others: that delivery is recorded ``failed`` with the reason, and the caller gets
the list of deliveries back. Rendering happens before the write transaction, so the
database is locked only for the inserts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from postroom.addresses import check_single_line
from postroom.db.tables import utcnow
from postroom.errors import FieldError, NotFound, ValidationError
from postroom.notify.digests import Digests
from postroom.notify.enqueue import Stager
from postroom.notify.matching import matches
from postroom.notify.render import TemplateError, TemplateSource, render
from postroom.notify.schemas import (
    DeliveryRead,
    DeliveryStatus,
    DigestRead,
    EventRead,
    NotifyResult,
    SubscriptionRead,
    check_event_name,
)
from postroom.notify.subscriptions import Subscriptions
from postroom.notify.tables import NotifyDelivery, NotifyEvent, Subscription
from postroom.notify.templates import Templates
from postroom.outbox.service import Outbox, SendRequest

__all__ = ["Notifier"]

MAX_DATA_BYTES = 256 * 1024


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _clean_data(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The event data as plain JSON values (times as ISO 8601 text), as it will be stored."""
    try:
        encoded = json.dumps(dict(data or {}), default=_jsonable)
    except (TypeError, ValueError) as exc:
        raise ValidationError(FieldError("data", f"must be JSON-serializable: {exc}")) from None
    if len(encoded) > MAX_DATA_BYTES:
        raise ValidationError(FieldError("data", f"must be at most {MAX_DATA_BYTES // 1024} KiB"))
    result: dict[str, Any] = json.loads(encoded)
    return result


def _why(exc: ValidationError) -> str:
    return "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in exc.errors)


@dataclass
class _Plan:
    """What to do for one subscription: a message to stage, an error, or collect."""

    sub: Subscription
    message: dict[str, Any] | None = None
    error: str | None = None


class Notifier:
    """Events, subscriptions, summaries and system mail. ``app.notify(...)`` calls
    :meth:`notify`; REST and the UI use :attr:`subscriptions` and :attr:`templates`."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        outbox: Outbox,
        templates: Templates,
        *,
        public_url: str | None = None,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self.templates = templates
        self.subscriptions = Subscriptions(sessions, templates, public_url=public_url)
        self.digests = Digests(sessions, outbox, templates, self.subscriptions)

    # -- events -----------------------------------------------------------------------------

    def notify(
        self,
        event: str,
        /,
        *,
        process: str | None = None,
        data: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> NotifyResult:
        """Tell the subscribers of ``event`` (from ``process``) about it; returns what happened
        for each. A repeated ``idempotency_key`` returns the first call's result and sends
        nothing. Raises ValidationError only for bad arguments: per-subscriber failures are
        recorded as ``failed`` deliveries, never raised."""
        reason = check_event_name(event)
        if reason:
            raise ValidationError(FieldError("event", reason))
        if process is not None and (not 0 < len(process) <= 200 or check_single_line(process)):
            raise ValidationError(FieldError("process", "must be 1 to 200 characters on one line"))
        if idempotency_key is not None and not (0 < len(idempotency_key) <= 200):
            raise ValidationError(FieldError("idempotency_key", "must be 1 to 200 characters"))
        clean = _clean_data(data)
        now = utcnow()
        with self._sessions() as s:
            if idempotency_key is not None:
                first = self._by_key(s, idempotency_key)
                if first is not None:
                    return self._result(s, first)
            plans = self._plan(s, event, process, clean, now)
        with self._sessions() as s:
            row = NotifyEvent(event=event, process=process, data=clean,
                              idempotency_key=idempotency_key, created_at=now)  # fmt: skip
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                s.rollback()  # the same key raced us; its event is the result
                first = self._by_key(s, idempotency_key or "")
                if first is None:
                    raise
                return self._result(s, first)
            stager = Stager(self._outbox, s)
            for plan in plans:
                s.add(self._deliver(row, plan, process, stager))
            s.commit()
            return self._result(s, row)

    def _plan(
        self, s: Session, event: str, process: str | None, data: dict[str, Any], now: datetime
    ) -> list[_Plan]:
        subs = s.scalars(
            select(Subscription).where(Subscription.enabled.is_(True)).order_by(Subscription.id)
        )
        reached = [
            sub
            for sub in subs
            if matches(
                event_pattern=sub.event,
                process_pattern=sub.process,
                rules=sub.filter,
                event=event,
                process=process,
                data=data,
            )  # fmt: skip
        ]
        sources: dict[str, TemplateSource | str] = {}
        plans = []
        for sub in reached:
            if sub.schedule:
                plans.append(_Plan(sub))
                continue
            if sub.template not in sources:
                try:
                    sources[sub.template] = self.templates.source(sub.template, session=s)
                except NotFound as exc:
                    sources[sub.template] = exc.message
            source = sources[sub.template]
            if isinstance(source, str):
                plans.append(_Plan(sub, error=source))
                continue
            context = {
                **data,
                **self.subscriptions.context(sub),
                "event": event,
                "process": process if process is not None else data.get("process"),
                "occurred_at": now.isoformat(),
            }
            try:
                rendered = render(source, context, limits=self.templates.limits)
            except TemplateError as exc:
                plans.append(_Plan(sub, error=exc.message))
                continue
            plans.append(_Plan(sub, self.subscriptions.message(sub, rendered, event=event)))
        return plans

    @staticmethod
    def _deliver(
        event: NotifyEvent, plan: _Plan, process: str | None, stager: Stager
    ) -> NotifyDelivery:
        row = NotifyDelivery(event_id=event.id, subscription_id=plan.sub.id,
                             address=plan.sub.address, created_at=event.created_at)  # fmt: skip
        if plan.sub.schedule:
            row.status = DeliveryStatus.COLLECTED.value
        elif plan.message is None:
            row.status, row.error = DeliveryStatus.FAILED.value, plan.error
        else:
            try:
                row.outbox_id = stager.add(SendRequest(plan.message, process=process))
                row.status = DeliveryStatus.QUEUED.value
            except ValidationError as exc:
                row.status, row.error = DeliveryStatus.FAILED.value, _why(exc)
        return row

    @staticmethod
    def _by_key(s: Session, key: str) -> NotifyEvent | None:
        return s.scalar(select(NotifyEvent).where(NotifyEvent.idempotency_key == key))

    @staticmethod
    def _deliveries(s: Session, event_ids: list[int]) -> dict[int, list[DeliveryRead]]:
        found: dict[int, list[DeliveryRead]] = {i: [] for i in event_ids}
        rows = s.scalars(
            select(NotifyDelivery)
            .where(NotifyDelivery.event_id.in_(event_ids))
            .order_by(NotifyDelivery.id)
        )
        for d in rows:
            found[d.event_id].append(
                DeliveryRead(
                    subscription_id=d.subscription_id,
                    address=d.address,
                    status=DeliveryStatus(d.status),
                    outbox_id=d.outbox_id,
                    digest_id=d.digest_id,
                    error=d.error,
                )  # fmt: skip
            )
        return found

    def _result(self, s: Session, row: NotifyEvent) -> NotifyResult:
        return NotifyResult(event_id=row.id, event=row.event, process=row.process,
                            deliveries=self._deliveries(s, [row.id])[row.id])  # fmt: skip

    def events(
        self, *, limit: int = 50, event: str | None = None, process: str | None = None
    ) -> list[EventRead]:
        """Recent events, newest first, with what each did for its subscribers."""
        q = select(NotifyEvent).order_by(NotifyEvent.id.desc()).limit(max(1, min(limit, 1000)))
        if event is not None:
            q = q.where(NotifyEvent.event == event)
        if process is not None:
            q = q.where(NotifyEvent.process == process)
        with self._sessions() as s:
            rows = list(s.scalars(q))
            deliveries = self._deliveries(s, [r.id for r in rows])
        return [
            EventRead(
                event_id=r.id,
                event=r.event,
                process=r.process,
                data=r.data,
                created_at=r.created_at,
                deliveries=deliveries[r.id],
            )  # fmt: skip
            for r in rows
        ]

    # -- summaries and system mail ----------------------------------------------------------

    def run_due_digests(self, now: datetime | None = None) -> list[DigestRead]:
        """Send every summary whose period has ended (see :meth:`Digests.run_due`)."""
        return self.digests.run_due(now)

    def unsubscribe(self, token: str, /) -> SubscriptionRead:
        """Honour an unsubscribe link (see :meth:`Subscriptions.unsubscribe`); raises NotFound."""
        return self.subscriptions.unsubscribe(token)

    def send_system_mail(
        self,
        name: str,
        /,
        *,
        to: str,
        data: Mapping[str, Any],
        profile: str | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Render a system template (e.g. ``password_reset``) and queue it through
        ``profile``, by default the system default; returns the outbox id.
        Raises TemplateError, NotFound or ValidationError: the caller is a person waiting."""
        rendered = self.templates.render_system_mail(name, data)
        message = {"to": [to], "subject": rendered.subject, "html": rendered.html,
                   "text": rendered.text, "headers": rendered.headers}  # fmt: skip
        return self._outbox.send(message, profile=profile, idempotency_key=idempotency_key)
