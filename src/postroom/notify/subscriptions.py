"""Subscriptions: who gets which events, and the one-click unsubscribe links in their mail.

The unsubscribe key is random, created on first use and kept in ``system_settings``, so
every postroom process sharing the database signs and checks the same links.
"""

from __future__ import annotations

import builtins
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from postroom.audit import record
from postroom.db.tables import SystemSetting, utcnow
from postroom.errors import FieldError, NotFound, ValidationError
from postroom.notify.matching import default_template
from postroom.notify.render import Rendered
from postroom.notify.schedule import next_fire
from postroom.notify.schemas import SubscriptionRead, SubscriptionSpec
from postroom.notify.tables import Subscription
from postroom.notify.templates import AUTO_SUBMITTED, Templates
from postroom.notify.tokens import parse_token, sign, verify
from postroom.validation import validate_model

__all__ = ["Subscriptions"]

_KEY_SETTING = "notify_unsubscribe_key"
_INVALID_LINK = "This unsubscribe link is not valid, or it was used already."


def _read(row: Subscription, now: datetime | None = None) -> SubscriptionRead:
    return SubscriptionRead(
        id=row.id, event=row.event, process=row.process, address=row.address,
        template=row.template, filter=row.filter, schedule=row.schedule,
        timezone=row.timezone, send_empty=row.send_empty, enabled=row.enabled,
        mode="digest" if row.schedule else "immediate", created_at=row.created_at,
        created_by=row.created_by,
        next_digest_at=next_fire(row.schedule, row.timezone, now or utcnow())
        if row.schedule else None,
    )  # fmt: skip


class Subscriptions:
    """Add, list, change and remove subscriptions; sign and honour unsubscribe links."""

    def __init__(
        self, sessions: sessionmaker[Session], templates: Templates, *, public_url: str | None
    ) -> None:
        self._sessions = sessions
        self._templates = templates
        self._public_url = (public_url or "").rstrip("/") or None
        self._key: bytes | None = None

    # -- CRUD -------------------------------------------------------------------------------

    def _spec(self, data: SubscriptionSpec | dict[str, Any]) -> SubscriptionSpec:
        if isinstance(data, SubscriptionSpec):
            spec = data
        else:
            try:
                spec = validate_model(SubscriptionSpec, data)
            except ValidationError as exc:
                # name the template's problem in the same round as the fields' problems
                raise ValidationError(exc.errors + self._template_problems(data, exc)) from None
        if spec.template is None:
            spec.template = default_template(spec.event, digest=spec.schedule is not None)
            if spec.template is None:
                raise ValidationError(
                    FieldError("template", "is required for events other than run.* and alert.*")
                )
        self._templates.get(spec.template)  # NotFound names the template
        return spec

    def _template_problems(self, data: dict[str, Any], exc: ValidationError) -> list[FieldError]:
        """What is wrong with the template of raw ``data`` whose other fields failed."""
        failed = {e.field for e in exc.errors}
        if "template" in failed:
            return []
        template = data.get("template")
        if not template:
            event = data.get("event")
            if "event" in failed or not isinstance(event, str):
                return []
            if default_template(event, digest=bool(data.get("schedule"))) is None:
                return [
                    FieldError("template", "is required for events other than run.* and alert.*")
                ]
            return []
        try:
            self._templates.get(str(template))
        except NotFound as missing:
            return [FieldError("template", missing.message)]
        return []

    def add(
        self, spec: SubscriptionSpec | dict[str, Any], /, *, actor: str = "python"
    ) -> SubscriptionRead:
        """Subscribe one address; raises ValidationError or NotFound (unknown template)."""
        spec = self._spec(spec)
        assert spec.template is not None  # _spec filled it in
        with self._sessions() as s:
            row = Subscription(
                **spec.model_dump(), token_nonce=secrets.token_hex(16), created_by=actor
            )
            s.add(row)
            s.flush()
            record(s, actor=actor, action="create", target_type="subscription",
                   target=str(row.id), details=spec.model_dump(mode="json"))  # fmt: skip
            s.commit()
            return _read(row)

    def get(self, id: int, /) -> SubscriptionRead:
        with self._sessions() as s:
            return _read(self._row(s, id))

    def list(
        self, *, event: str | None = None, process: str | None = None
    ) -> builtins.list[SubscriptionRead]:
        """All subscriptions (optionally those with this exact event / process pattern)."""
        q = select(Subscription).order_by(Subscription.id)
        if event is not None:
            q = q.where(Subscription.event == event)
        if process is not None:
            q = q.where(Subscription.process == process)
        now = utcnow()
        with self._sessions() as s:
            return [_read(r, now) for r in s.scalars(q)]

    def update(
        self, id: int, changes: dict[str, Any], /, *, actor: str = "python"
    ) -> SubscriptionRead:
        """Change fields of a subscription (a partial one); its unsubscribe link stays valid."""
        with self._sessions() as s:
            row = self._row(s, id)
            current = _read(row).model_dump(include=set(SubscriptionSpec.model_fields))
            spec = self._spec({**current, **changes})
            for field, value in spec.model_dump().items():
                setattr(row, field, value)
            record(s, actor=actor, action="update", target_type="subscription",
                   target=str(id), details={"changed": sorted(changes)})  # fmt: skip
            s.commit()
            return _read(row)

    def remove(self, id: int, /, *, actor: str = "python") -> SubscriptionRead:
        """Delete a subscription; raises NotFound."""
        with self._sessions() as s:
            row = self._row(s, id)
            removed = _read(row)
            self._delete(s, id)
            record(s, actor=actor, action="delete", target_type="subscription",
                   target=str(id), details={"address": row.address, "event": row.event})  # fmt: skip
            s.commit()
            return removed

    @staticmethod
    def _delete(s: Session, id: int) -> bool:
        # a statement, not session.delete(): its row count tells a concurrent removal apart
        result = s.execute(delete(Subscription).where(Subscription.id == id))
        return bool(getattr(result, "rowcount", 0))

    @staticmethod
    def _row(s: Session, id: int) -> Subscription:
        row = s.get(Subscription, id)
        if row is None:
            raise NotFound(f"No subscription {id}. `postroom subscription list` shows them.")
        return row

    # -- unsubscribe links ------------------------------------------------------------------

    def signing_key(self) -> bytes:
        """The key of unsubscribe links, created on first use. Call it before opening a
        write transaction that signs links: on SQLite, creating it needs the write lock."""
        if self._key is None:
            with self._sessions() as s:
                setting = s.get(SystemSetting, _KEY_SETTING)
                if setting is None or not setting.value:
                    s.add(SystemSetting(key=_KEY_SETTING, value=secrets.token_hex(32)))
                    try:
                        s.commit()
                    except IntegrityError:  # another process created it first: use theirs
                        s.rollback()
                    setting = s.get(SystemSetting, _KEY_SETTING)
                assert setting is not None and setting.value is not None
                self._key = bytes.fromhex(setting.value)
        return self._key

    def token(self, row: Subscription) -> str:
        """The signed unsubscribe token of a subscription."""
        return sign(self.signing_key(), row.id, row.token_nonce)

    def unsubscribe_url(self, row: Subscription) -> str | None:
        """``<public_url>/unsubscribe/<token>``; None without a public URL."""
        if self._public_url is None:
            return None
        return f"{self._public_url}/unsubscribe/{self.token(row)}"

    def unsubscribe(self, token: str, /) -> SubscriptionRead:
        """Remove the subscription a link was made for. Works once; a tampered, foreign or
        used token raises NotFound (all alike, so a guess learns nothing)."""
        parsed = parse_token(token)
        if parsed is None:
            raise NotFound(_INVALID_LINK)
        id, mac = parsed
        key = self.signing_key()
        with self._sessions() as s:
            row = s.get(Subscription, id, with_for_update=True)
            if row is None or not verify(key, id, row.token_nonce, mac):
                raise NotFound(_INVALID_LINK)
            removed = _read(row)
            if not self._delete(s, id):  # a concurrent click removed it first
                raise NotFound(_INVALID_LINK)
            record(s, actor="unsubscribe-link", action="delete", target_type="subscription",
                   target=str(id), details={"address": row.address, "event": row.event})  # fmt: skip
            s.commit()
            return removed

    # -- messages ---------------------------------------------------------------------------

    def context(self, row: Subscription) -> dict[str, Any]:
        """What every template of this subscription may use besides the event's data."""
        return {
            "unsubscribe_url": self.unsubscribe_url(row),
            "subscription": _read(row).model_dump(mode="json"),
        }

    def message(self, row: Subscription, rendered: Rendered, *, event: str) -> dict[str, Any]:
        """The outgoing message for one rendered notification to this subscriber."""
        headers = {**rendered.headers, **AUTO_SUBMITTED, "X-Postroom-Event": event}
        url = self.unsubscribe_url(row)
        if url is not None:
            headers["List-Unsubscribe"] = f"<{url}>"
            if url.startswith("https://"):  # RFC 8058 one-click is defined for HTTPS only
                headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        return {
            "to": [row.address],
            "subject": rendered.subject,
            "html": rendered.html,
            "text": rendered.text,
            "headers": headers,
        }
