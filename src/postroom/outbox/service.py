"""Sending: resolve the profile, validate and compose, and store durably in the outbox."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from postroom.db.tables import Binding, Profile, SystemSetting
from postroom.errors import FieldError, ValidationError
from postroom.hmac_keys import HmacKeys
from postroom.notify.compose import OutgoingMessage, compose
from postroom.outbox.bounce_tokens import make_token, stamp
from postroom.outbox.queue import DEFAULT_DEADLINE, Enqueue, OutboxQueue, stage
from postroom.outbox.schemas import OutboxRead, OutboxSummary
from postroom.profiles.schemas import SenderSettings
from postroom.profiles.service import DEFAULT_PROFILE_KEY, name_key
from postroom.send_limits import SendLimits
from postroom.senders import SenderScope
from postroom.validation import validate_model

__all__ = ["Outbox", "SendRequest", "Stager"]


@dataclass(frozen=True)
class SendRequest:
    """One message of a :meth:`Outbox.send_many` batch."""

    message: OutgoingMessage | dict[str, Any]
    profile: str | None = None
    process: str | None = None
    idempotency_key: str | None = None
    send_at: datetime | None = None


@dataclass(frozen=True)
class _Resolved:
    id: int
    name: str
    sender: SenderSettings


class Outbox:
    """The send API and the outbox's status and control."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        queue: OutboxQueue,
        *,
        bounce_keys: HmacKeys | None = None,
        limits: SendLimits | None = None,
    ) -> None:
        self._sessions = sessions
        self.queue = queue
        #: stamps every message with its bounce token (only genuine notices can bounce it)
        self.bounce_keys = bounce_keys
        self.limits = limits or SendLimits()

    def _resolve(self, s: Session, profile: str | None, process: str | None) -> _Resolved:
        row: Profile | None = None
        if profile:
            row = s.scalar(select(Profile).where(Profile.name_key == name_key(profile)))
            if row is None:
                raise ValidationError(
                    FieldError("profile", f"no profile named '{profile}'", kind="not_found")
                )
        elif process:
            binding = s.scalar(select(Binding).where(Binding.process_key == name_key(process)))
            if binding is not None:
                row = s.get(Profile, binding.profile_id)
        if row is None:
            setting = s.get(SystemSetting, DEFAULT_PROFILE_KEY)
            if setting and setting.value:
                row = s.get(Profile, int(setting.value))
        if row is None:
            who = f"process '{process}' has no binding and " if process else ""
            raise ValidationError(
                FieldError(
                    "profile",
                    f"{who}there is no system default profile: name a profile, bind the "
                    "process (`postroom bind`), or set a default (`postroom profile set-default`)",
                )
            )
        return _Resolved(row.id, row.name, SenderSettings.model_validate(row.spec["sender"]))

    def _prepare(
        self,
        s: Session,
        req: SendRequest,
        cache: dict[tuple[str | None, str | None], _Resolved],
        now: datetime,
        scope: SenderScope | None = None,
    ) -> Enqueue:
        if scope is not None:  # what the key may send as, before anything is looked up
            scope.check_process(req.process)
            if req.profile:
                scope.check_profile(req.profile)
        too_many = self.limits.message_recipients(req.message)
        if too_many is not None:  # before 100,000 addresses are parsed
            raise ValidationError(too_many)
        message = (
            req.message
            if isinstance(req.message, OutgoingMessage)
            else validate_model(OutgoingMessage, req.message)
        )
        if req.idempotency_key is not None and not (0 < len(req.idempotency_key) <= 200):
            raise ValidationError(FieldError("idempotency_key", "must be 1 to 200 characters"))
        key = (req.profile, req.process)
        if key not in cache:
            cache[key] = self._resolve(s, req.profile, req.process)
        profile = cache[key]
        if scope is not None:
            scope.check_profile(profile.name, process=req.process)
        composed = compose(message, sender=profile.sender)
        raw = composed.raw
        if self.bounce_keys is not None:
            raw = stamp(raw, make_token(*self.bounce_keys.current(), composed.message_id))
        due = req.send_at or now
        if due.tzinfo is None:
            raise ValidationError(FieldError("send_at", "must include a time zone (e.g. …Z)"))
        return Enqueue(
            profile_id=profile.id,
            profile_name=profile.name,
            process=req.process,
            priority=message.priority.rank,
            due_at=due,
            deadline_at=max(due, now) + DEFAULT_DEADLINE,
            message_id=composed.message_id,
            idempotency_key=req.idempotency_key,
            subject=message.subject,
            envelope_from=composed.envelope_from,
            recipients=composed.recipients,
            raw=raw,
            created_by=scope.key_id if scope is not None else None,
        )

    def send(
        self,
        message: OutgoingMessage | dict[str, Any],
        /,
        *,
        profile: str | None = None,
        process: str | None = None,
        idempotency_key: str | None = None,
        send_at: datetime | None = None,
    ) -> int:
        """Validate, compose and store ``message``; returns its id once durably committed.

        The profile is ``profile``, else ``process``'s binding, else the system default.
        Raises ValidationError (naming the field) when anything is wrong; nothing is stored then.
        """
        return self.send_many([SendRequest(message, profile, process, idempotency_key, send_at)])[0]

    def send_many(
        self, requests: Sequence[SendRequest], /, *, scope: SenderScope | None = None
    ) -> builtins.list[int]:
        """Like :meth:`send` for a batch, in one transaction: all are stored or none.

        With ``scope`` (an API key's), each message must be within what the key may send
        as (else PermissionDenied, nothing stored), and records the key as its creator."""
        cache: dict[tuple[str | None, str | None], _Resolved] = {}
        now = datetime.now(UTC)  # one time for the batch: it is stored in one transaction
        with self._sessions() as s:
            items = self._prepare_all(s, requests, cache, now, scope)
        return self.queue.add(items)

    def send_groups(
        self, batches: Sequence[tuple[Sequence[SendRequest], SenderScope | None]], /
    ) -> builtins.list[builtins.list[int] | Exception]:
        """Several callers' :meth:`send_many` batches stored with ONE commit (group commit,
        :mod:`postroom.outbox.group_commit`). Each batch is validated and stored all or
        nothing on its own: the result is its ids, or the error that refused it. A failure
        of the shared commit itself is raised (then nothing of any batch was stored)."""
        cache: dict[tuple[str | None, str | None], _Resolved] = {}
        now = datetime.now(UTC)
        prepared: builtins.list[builtins.list[Enqueue] | Exception] = []
        with self._sessions() as s:
            for requests, scope in batches:
                try:
                    prepared.append(self._prepare_all(s, requests, cache, now, scope))
                except Exception as exc:  # noqa: BLE001 - it is that caller's answer
                    prepared.append(exc)
        ready = [p for p in prepared if not isinstance(p, Exception)]
        stored = iter(self.queue.add_groups(ready) if ready else [])
        return [p if isinstance(p, Exception) else next(stored) for p in prepared]

    def _prepare_all(
        self,
        s: Session,
        requests: Sequence[SendRequest],
        cache: dict[tuple[str | None, str | None], _Resolved],
        now: datetime,
        scope: SenderScope | None,
    ) -> builtins.list[Enqueue]:
        items = []
        for index, req in enumerate(requests):
            try:
                items.append(self._prepare(s, req, cache, now, scope))
            except ValidationError as exc:
                if len(requests) == 1:
                    raise
                raise ValidationError(
                    [FieldError(f"{index}.{e.field}", e.message) for e in exc.errors]
                ) from None
        return items

    def stager(self, session: Session, /) -> Stager:
        """Stage messages in the caller's transaction (they commit with the caller's rows)."""
        return Stager(self, session)

    def get(self, id: int, /, *, owner: int | None = None) -> OutboxRead:
        """One message; with ``owner``, only one that API key created (else NotFound)."""
        return self.queue.get(id, owner=owner)

    def list(self, **filters: Any) -> builtins.list[OutboxSummary]:
        """Newest first; ``owner=`` an API key's id keeps only the messages it created."""
        return self.queue.list(**filters)

    def retry(self, id: int, /) -> OutboxSummary:
        return self.queue.retry(id)

    def bulk_count(self, action: str, **filters: Any) -> int:
        """How many messages a bulk ``action`` ("retry" or "cancel") with these filters
        (those of :meth:`list`, ``search`` included) would act on now."""
        return self.queue.bulk_count(action, **filters)

    def bulk(self, action: str, *, actor: str, **filters: Any) -> int:
        """Retry or cancel every matching message that can be; audited once. The count."""
        return self.queue.bulk(action, actor=actor, **filters)

    def cancel(self, id: int, /) -> OutboxSummary:
        return self.queue.cancel(id)

    def wait(self, id: int, /, *, timeout_s: float) -> OutboxRead:
        """Poll until the message reaches a final state or ``timeout_s`` passes."""
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            found = self.queue.get(id)
            if found.status.final or time.monotonic() >= deadline:
                return found
            time.sleep(0.1)


class Stager:
    """Stages outbox messages on one session; profiles are resolved once per batch."""

    def __init__(self, outbox: Outbox, session: Session) -> None:
        self._outbox = outbox
        self._session = session
        self._cache: dict[tuple[str | None, str | None], _Resolved] = {}

    def add(self, request: SendRequest) -> int:
        """Validate, compose and stage one message; returns its outbox id (flushed, not
        committed). Raises ValidationError like :meth:`Outbox.send`, staging nothing then."""
        item = self._outbox._prepare(self._session, request, self._cache, datetime.now(UTC))
        return stage(self._session, [item])[0]
