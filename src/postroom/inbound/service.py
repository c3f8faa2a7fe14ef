"""Inbound mail as a service: subscribe, see what arrived, check health, run the sync.

One :class:`Inbound` per :class:`~postroom.app.Postroom` (``app.inbound``)::

    sub = app.inbound.subscribe("Support inbox", handle)   # handle(event: InboundEvent)
    app.inbound.webhooks.add("https://hooks.example.com/mail", profile="Support inbox")
    for h in app.inbound.health():
        print(h.profile, h.state, h.last_error)
    runner = app.inbound.runner()                           # await runner.run(); runner.stop()
"""

from __future__ import annotations

import builtins
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from postroom.db.tables import Profile
from postroom.errors import NotFound
from postroom.hmac_keys import HmacKeys
from postroom.inbound.health import read_health
from postroom.inbound.mailboxes import Mailboxes
from postroom.inbound.parsing import MessageParser
from postroom.inbound.retention import InboundRetention
from postroom.inbound.runner import InboundRunner
from postroom.inbound.schemas import (
    AttachmentInfo,
    InboundConfig,
    InboundEvent,
    InboundStatus,
    InboundSummary,
    MailboxHealth,
)
from postroom.inbound.store import InboundStore, summary
from postroom.inbound.subscribers import (
    Callback,
    CallbackRegistry,
    CallbackSubscription,
    Dispatcher,
)
from postroom.inbound.sync import SyncServices
from postroom.inbound.tables import InboundAttachment, InboundDelivery, InboundMessage
from postroom.inbound.webhooks import Webhooks
from postroom.net.policy import NetPolicy
from postroom.profiles.service import ProfileService, name_key
from postroom.secrets import SecretBox

__all__ = ["Inbound"]


class Inbound:
    """Receiving mail for one postroom database."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        box: SecretBox,
        policy: NetPolicy,
        *,
        config: InboundConfig | None = None,
        retention_days: int = 0,
    ) -> None:
        self.config = config or InboundConfig()
        #: runners delete messages done with for this many days (0: never); see retention.py
        self.retention_days = retention_days
        self.retention = InboundRetention(sessions)
        self._sessions = sessions
        self._policy = policy
        self.callbacks = CallbackRegistry()
        self.mailboxes = Mailboxes(sessions)
        self.store = InboundStore(sessions, self.mailboxes, bounce_keys=HmacKeys(sessions, box))
        self.webhooks = Webhooks(sessions, box, policy)
        self._profiles = ProfileService(sessions, box)

    def replace_box(self, box: SecretBox) -> None:
        """Use new secret keys (after ``rotate_keys``) for passwords and webhook secrets."""
        self.webhooks.box = box
        self._profiles = ProfileService(self._sessions, box)
        if self.store.bounce_keys is not None:
            self.store.bounce_keys.replace_box(box)

    # -- subscribers ----------------------------------------------------------------------------

    def subscribe(
        self, profile: str | None, fn: Callback, /, *, name: str | None = None
    ) -> CallbackSubscription:
        """Call ``fn(event)`` for every message received by ``profile`` (None: every profile).

        ``fn`` may be a plain function (run on a worker thread) or a coroutine function. An
        exception (or taking longer than ``webhook_timeout_s``) counts as a failure: the
        message is offered again later and the processed action waits. ``name`` keys the
        delivery log (default: the function's module and qualified name), so a callback
        registered again after a restart is not called again for messages it already took.
        Callbacks live in this process only; they run where the listener runs.
        """
        return self.callbacks.add(profile, fn, name=name)

    # -- reading --------------------------------------------------------------------------------

    def list(
        self,
        *,
        profile: str | None = None,
        status: InboundStatus | str | None = None,
        limit: int = 100,
    ) -> list[InboundSummary]:
        """Stored messages, newest first. Raises NotFound for an unknown profile."""
        with self._sessions() as s:
            query = select(InboundMessage).order_by(InboundMessage.id.desc()).limit(limit)
            if profile is not None:
                query = query.where(InboundMessage.profile_id == _profile_id(s, profile))
            if status is not None:
                query = query.where(InboundMessage.status == InboundStatus(status).value)
            return [summary(r) for r in s.scalars(query)]

    def get(self, inbound_id: int, /) -> InboundEvent:
        """A stored message in full (the shape subscribers receive). Raises NotFound."""
        try:
            return self.store.event(inbound_id)
        except LookupError:
            raise NotFound(f"No inbound message {inbound_id}.") from None

    def summary(self, inbound_id: int, /) -> InboundSummary:
        """A stored message's status (rejection reason, attempts, last error)."""
        row = self.store.get(inbound_id)
        if row is None:
            raise NotFound(f"No inbound message {inbound_id}.")
        return summary(row)

    def attachment(self, attachment_id: int, /) -> tuple[AttachmentInfo, bytes | None]:
        """An attachment's metadata and content (None when it was over the size limit)."""
        with self._sessions() as s:
            row = s.get(InboundAttachment, attachment_id)
            if row is None:
                raise NotFound(f"No inbound attachment {attachment_id}.")
            info = AttachmentInfo(
                id=row.id,
                filename=row.filename,
                content_type=row.content_type,
                size=row.size,
                stored=row.stored,
            )
            return info, row.content

    def deliveries(self, inbound_id: int, /) -> builtins.list[dict[str, object]]:
        """The delivery log of one message: every attempt per subscriber."""
        with self._sessions() as s:
            rows = s.scalars(
                select(InboundDelivery)
                .where(InboundDelivery.inbound_id == inbound_id)
                .order_by(InboundDelivery.id)
            )
            return [
                {
                    "subscriber": r.subscriber,
                    "attempt": r.attempt,
                    "at": r.at,
                    "ok": r.ok,
                    "status_code": r.status_code,
                    "error": r.error,
                    "duration_ms": r.duration_ms,
                }
                for r in rows
            ]

    def health(
        self, profile: str | None = None, /, *, now: datetime | None = None
    ) -> builtins.list[MailboxHealth]:
        """Listener health of every receiving profile (or of ``profile``)."""
        return read_health(self._sessions, self.config, profile=profile, now=now)

    # -- running --------------------------------------------------------------------------------

    def services(self, config: InboundConfig | None = None) -> SyncServices:
        """What listeners work with (for :class:`~postroom.inbound.runner.InboundRunner`);
        ``config`` tunes this run (default: :attr:`config`). Subscribers are this object's."""
        config = config or self.config
        dispatcher = Dispatcher(
            self.store, self.webhooks, self.callbacks, policy=self._policy, config=config
        )
        return SyncServices(
            sessions=self._sessions,
            mailboxes=self.mailboxes,
            store=self.store,
            dispatcher=dispatcher,
            profiles=self._profiles,
            policy=self._policy,
            config=config,
            parser=MessageParser(config.limits),
        )

    def runner(
        self, *, name: str | None = None, config: InboundConfig | None = None
    ) -> InboundRunner:
        """A runner for every enabled receiving profile: ``await runner.run()``,
        ``runner.stop()``. ``name`` identifies this process in the mailbox leases; ``config``
        tunes this run. ``postroom serve`` and ``postroom inbound run`` both call this on
        ``app.inbound``, so they hand messages to the same subscribers (webhooks, and the
        callbacks :class:`~postroom.app.Postroom` registers, such as deciding actionable
        emails by reply)."""
        return InboundRunner(
            self.services(config),
            name=name,
            retention=self.retention,
            retention_days=self.retention_days,
        )


def _profile_id(s: Session, name: str) -> int:
    found = s.scalar(select(Profile.id).where(Profile.name_key == name_key(name)))
    if found is None:
        raise NotFound(f"No profile named '{name}'. `postroom profile list` shows them.")
    return found
