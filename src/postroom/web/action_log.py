"""Read-only queries behind the Actions pages: the list of requests and the mails of one.

``actions/service`` has no list method yet, so the UI reads the tables itself, here and
nowhere else; when the service grows ``Actions.list()`` this module should move down to
it. Only plain columns are read: never a link token, the signing keys or a webhook URL
(which may carry a secret in its query).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, func, or_, select

from postroom.actions.tables import ActionMessage, ActionRequest
from postroom.app import Postroom
from postroom.db.tables import utcnow
from postroom.errors import NotFound

__all__ = ["ActionMail", "ActionRow", "ActionState", "action_mails", "list_actions", "state_of"]


class ActionState(StrEnum):
    PENDING = "pending"
    DECIDED = "decided"
    EXPIRED = "expired"  # pending, and its expiry has passed


@dataclass(frozen=True)
class ActionRow:
    id: str
    process: str
    profile: str
    subject: str
    status: ActionState
    decision: str | None
    decided_by: str | None
    decided_via: str | None
    decided_at: datetime | None
    created_at: datetime
    expires_at: datetime
    recipients: int


@dataclass(frozen=True)
class ActionMail:
    """The request mail to one recipient and its outbox message."""

    recipient: str
    outbox_id: int


def state_of(stored: str, expires_at: datetime, now: datetime) -> ActionState:
    """What people see: a pending request past its expiry is expired."""
    if stored == ActionState.DECIDED:
        return ActionState.DECIDED
    if stored == ActionState.EXPIRED or now >= expires_at:
        return ActionState.EXPIRED
    return ActionState.PENDING


def _where_state(state: ActionState, now: datetime) -> ColumnElement[bool]:
    t = ActionRequest
    if state is ActionState.DECIDED:
        return t.status == "decided"
    if state is ActionState.EXPIRED:
        return or_(t.status == "expired", and_(t.status == "pending", t.expires_at <= now))
    return and_(t.status == "pending", t.expires_at > now)


def list_actions(
    pr: Postroom,
    *,
    status: ActionState | None = None,
    process: str | None = None,
    limit: int = 50,
    before: str | None = None,
) -> tuple[list[ActionRow], bool]:
    """Requests newest first (``limit`` of them, older than ``before``) and whether more exist.

    Raises NotFound when ``before`` names no request.
    """
    t = ActionRequest
    now = utcnow()
    q = select(
        t.id, t.process, t.profile_name, t.subject, t.status, t.decision, t.decided_by,
        t.decided_via, t.decided_at, t.created_at, t.expires_at, t.recipients,
    ).order_by(t.created_at.desc(), t.id.desc())  # fmt: skip
    if status is not None:
        q = q.where(_where_state(status, now))
    if process:
        q = q.where(func.lower(t.process) == process.strip().lower())
    with pr.sessions() as s:
        if before is not None:
            anchor = s.get(t, before)
            if anchor is None:
                raise NotFound(f"No action request with id {before}.")
            # ids order the requests created in the same instant
            q = q.where(
                or_(
                    t.created_at < anchor.created_at,
                    and_(t.created_at == anchor.created_at, t.id < anchor.id),
                )
            )
        rows = s.execute(q.limit(limit + 1)).all()
    found = [
        ActionRow(
            id=r.id,
            process=r.process,
            profile=r.profile_name,
            subject=r.subject,
            status=state_of(r.status, r.expires_at, now),
            decision=r.decision,
            decided_by=r.decided_by,
            decided_via=r.decided_via,
            decided_at=r.decided_at,
            created_at=r.created_at,
            expires_at=r.expires_at,
            recipients=len(r.recipients or []),
        )  # fmt: skip
        for r in rows
    ]
    return found[:limit], len(found) > limit


def action_mails(pr: Postroom, action_id: str, /) -> tuple[list[ActionMail], str | None]:
    """The request's mails (one per recipient) and what became of its webhook, if it has one."""
    with pr.sessions() as s:
        mails = s.execute(
            select(ActionMessage.recipient, ActionMessage.outbox_id)
            .where(ActionMessage.action_id == action_id)
            .order_by(ActionMessage.id)
        ).all()
        hook = s.execute(
            select(ActionRequest.webhook_url.is_not(None), ActionRequest.webhook_status).where(
                ActionRequest.id == action_id
            )
        ).first()
    webhook = None
    if hook is not None and hook[0]:
        webhook = hook[1] or "not called yet: it is called once the request is decided"
    return [ActionMail(m.recipient, m.outbox_id) for m in mails], webhook
