"""The work of one connected session on a mailbox: new mail in, subscribers, processed.

:meth:`MailboxSync.new_mail`: search UIDs above the stored last UID; for each, in UID
order, fetch RFC822.SIZE and the Message-ID, refuse messages over the size limit without
downloading them, skip messages stored before (Message-ID and size), fetch bodies in
batches of at most ``batch_bytes``, parse within the limits, store (moving ``last_uid`` in
the same transaction), hand to subscribers and — once every subscriber has the message —
apply ``processed``. :meth:`MailboxSync.retry_due` offers failed messages again.

A batch whose bytes break the IMAP read limits is fetched again one message at a time; the
message that breaks them alone is recorded as rejected and skipped, so no message can
stall the mailbox.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ParamSpec, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from postroom.db.tables import utcnow
from postroom.imap.client import ImapError, ImapLimitExceeded
from postroom.imap.mailbox import MailboxSession, MessageSize
from postroom.imap.parse import Rejected
from postroom.inbound.mailboxes import LeaseLost, Mailboxes
from postroom.inbound.parsing import MessageParser
from postroom.inbound.schemas import InboundConfig, InboundStatus, ListenerState, next_retry
from postroom.inbound.store import (
    InboundStore,
    Location,
    database_unavailable,
    describe_failure,
)
from postroom.inbound.subscribers import Dispatcher
from postroom.net.policy import NetPolicy
from postroom.profiles.schemas import ImapSettings
from postroom.profiles.service import ProfileService

__all__ = ["Interrupted", "MailboxSync", "SyncServices", "db"]

_T = TypeVar("_T")
_P = ParamSpec("_P")
_STRIKES = 3

log = logging.getLogger("postroom.inbound")


@dataclass(frozen=True)
class SyncServices:
    """What listeners work with (built by :class:`postroom.inbound.service.Inbound`)."""

    sessions: sessionmaker[Session]
    mailboxes: Mailboxes
    store: InboundStore
    dispatcher: Dispatcher
    profiles: ProfileService
    policy: NetPolicy
    config: InboundConfig
    parser: MessageParser  # one parser process for every listener of the runner


class Interrupted(Exception):
    """Asked to stop (or the lease was lost): raised between two messages."""


@dataclass
class Isolation:
    """Finding the one message that breaks fetching, across reconnects.

    A batch whose fetch fails is fetched again one UID at a time up to ``careful_until``.
    A single message that breaks a read limit is rejected at once; one that fails
    otherwise is rejected after ``_STRIKES`` consecutive failures (``strikes``), so that
    no message can stall the mailbox and a passing fault costs nothing.
    """

    careful_until: int = 0
    strikes: dict[int, int] = field(default_factory=dict)


async def db(fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run a blocking database call on a thread, leaving the event loop (and IDLE) free."""
    return await asyncio.to_thread(fn, *args, **kwargs)


@dataclass
class MailboxSync:
    """One session's work on ``where``; ``careful_until`` and ``tripped`` carry over."""

    s: SyncServices
    session: MailboxSession
    where: Location
    imap: ImapSettings
    interrupt: asyncio.Event
    isolation: Isolation = field(default_factory=Isolation)
    tripped: set[str] = field(default_factory=set)  # subscribers that failed this round

    @property
    def mode(self) -> ListenerState:
        idle = self.imap.use_idle and self.session.supports_idle
        return ListenerState.IDLE if idle else ListenerState.POLLING

    def _check(self) -> None:
        if self.interrupt.is_set():
            raise Interrupted

    async def new_mail(self, last_uid: int, uidnext: int | None) -> int:
        """Take every message above ``last_uid``; returns the new last UID."""
        session, cfg = self.session, self.s.config
        while True:
            uids = await session.new_uids(last_uid, uidnext=uidnext)
            if not uids:
                if uidnext is not None and uidnext - 1 > last_uid:
                    # Nothing is left below UIDNEXT (new mail gets higher UIDs): remember
                    # that, so the empty stretch is not searched again every round.
                    await db(self.s.store.skip, self.where, uidnext - 1)
                    last_uid = uidnext - 1
                return last_uid
            while uids:
                self._check()
                size = 1 if uids[0] <= self.isolation.careful_until else cfg.batch
                batch, uids = uids[:size], uids[size:]
                last_uid = await self._take(batch)

    async def _take(self, batch: list[int]) -> int:
        """Process ``batch`` strictly in UID order (``last_uid`` never passes a message that
        is not stored yet); returns the last UID done."""
        session, where, limits = self.session, self.where, self.s.config.limits
        try:
            sizes = await session.fetch_sizes(batch)
        except ImapError as exc:
            await self._fetch_failed(batch, None, exc)
            raise
        seen: dict[int, tuple[int, InboundStatus]] = {}
        for uid, known in sizes.items():
            if known.message_id is not None and known.size <= limits.max_bytes:
                found = await db(
                    self.s.store.duplicate,
                    where.profile_id,
                    message_id=known.message_id,
                    size=known.size,
                )
                if found is not None:
                    seen[uid] = found  # stored before: not downloaded again
        wanted = [
            u for u in batch if u in sizes and sizes[u].size <= limits.max_bytes and u not in seen
        ]
        bodies: dict[int, bytes] = {}
        done = batch[0] - 1
        for uid in batch:
            self._check()
            info = sizes.get(uid)
            if info is None:  # expunged meanwhile
                await db(self.s.store.skip, where, uid)
            elif info.size > limits.max_bytes:
                await db(
                    self.s.store.reject,
                    where,
                    uid,
                    size=info.size,
                    message_id=info.message_id,
                    reason=f"larger than {limits.max_bytes} bytes ({info.size}); not downloaded",
                )
            elif uid in seen:
                await self._seen_before(uid, *seen[uid])
            else:
                if uid not in bodies:
                    group = self._group(wanted[wanted.index(uid) :], sizes)
                    total = sum(sizes[u].size for u in group)
                    try:
                        bodies = await session.fetch_bodies(group, size=total)
                    except ImapError as exc:
                        await self._fetch_failed(group, sizes, exc)
                        raise
                raw = bodies.pop(uid, None)
                if raw is None:  # recorded, not skipped silently: a gap must be visible
                    await db(
                        self.s.store.reject,
                        where,
                        uid,
                        size=info.size,
                        message_id=info.message_id,
                        reason="the server returned no content for it (expunged meanwhile?)",
                    )
                else:
                    await self._accept(uid, raw, info)
            done = uid
        return done

    def _group(self, uids: list[int], sizes: dict[int, MessageSize]) -> list[int]:
        """The next UIDs to fetch in one command: at least one, within ``batch_bytes``."""
        group: list[int] = []
        total = 0
        for uid in uids:
            total += sizes[uid].size
            if group and total > self.s.config.batch_bytes:
                break
            group.append(uid)
        return group

    async def _fetch_failed(
        self, uids: list[int], sizes: dict[int, MessageSize] | None, exc: ImapError
    ) -> None:
        iso = self.isolation
        if len(uids) > 1:
            iso.careful_until = max(iso.careful_until, uids[-1])  # find the culprit
            return
        uid = uids[0]
        strikes = iso.strikes.get(uid, 0) + 1
        if isinstance(exc, ImapLimitExceeded):
            reason = f"the server sent more than postroom's limits allow: {exc.message}"
        elif strikes >= _STRIKES:
            reason = f"could not be fetched ({strikes} attempts in a row): {exc.message}"
        else:
            iso.strikes = {uid: strikes}  # only the message at the head counts
            return
        iso.strikes.pop(uid, None)
        info = sizes.get(uid) if sizes else None
        await db(
            self.s.store.reject,
            self.where,
            uid,
            size=info.size if info else 0,
            message_id=info.message_id if info else None,
            reason=reason,
        )

    async def _seen_before(self, uid: int, inbound_id: int, status: InboundStatus) -> None:
        """A message stored before (e.g. read again after a UIDVALIDITY change)."""
        if status in (InboundStatus.RECEIVED, InboundStatus.DELIVERED):
            # still pending: follow it to its new UID so the processed action finds it
            await db(self.s.store.relocate, self.where, uid, inbound_id)
        else:
            await db(self.s.store.skip, self.where, uid)

    async def _accept(self, uid: int, raw: bytes, info: MessageSize) -> None:
        where = self.where
        sha256 = hashlib.sha256(raw).hexdigest()
        # again just before storing: the same message may come twice in one batch, and one
        # without a Message-ID is only recognised by its bytes
        found = await db(
            self.s.store.duplicate,
            where.profile_id,
            message_id=info.message_id,
            size=info.size,
            sha256=sha256,
        )
        if found is not None:
            await self._seen_before(uid, *found)
            return
        # in the parser process: a slow message cannot hold this process's GIL
        parsed = await self.s.parser.parse(raw)
        if isinstance(parsed, Rejected):
            await self._quarantine(uid, info, parsed.reason)
            return
        try:
            inbound_id = await db(
                self.s.store.store,
                where,
                uid,
                parsed.message,
                size=info.size,
                sha256=sha256,
                bounce=parsed.bounce,
            )
        except LeaseLost:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever this message does to the write
            if database_unavailable(exc):
                raise  # not the message's fault: reconnect and try it again
            # the message itself cannot be stored (a value the database refuses, ...):
            # quarantine it so that the messages after it are not held up behind it
            log.warning(
                "inbound: UID %s of profile %s could not be stored: %s; quarantined",
                uid, where.profile_id, describe_failure(exc),
            )  # fmt: skip
            await self._quarantine(uid, info, f"could not be stored: {describe_failure(exc)}")
            return
        if inbound_id is not None:
            await self._handle(inbound_id)

    async def _quarantine(self, uid: int, info: MessageSize, reason: str) -> None:
        """Record the message at ``uid`` as rejected with ``reason`` and move past it; it
        stays untouched on the server (find it there by its UID)."""
        await db(
            self.s.store.reject,
            self.where,
            uid,
            size=info.size,
            message_id=info.message_id,
            reason=reason,
        )

    # -- subscribers and the processed action -----------------------------------------------------

    async def retry_due(self) -> None:
        """Offer again the messages whose subscribers or processed action are due."""
        where = self.where
        due = await db(self.s.store.due, where.profile_id, where.folder, now=utcnow())
        for inbound_id in due:
            self._check()
            await self._handle(inbound_id)

    async def _handle(self, inbound_id: int) -> None:
        session, where, imap = self.session, self.where, self.imap
        store, cfg = self.s.store, self.s.config
        row = await db(store.get, inbound_id)
        if row is None or row.status not in (InboundStatus.RECEIVED, InboundStatus.DELIVERED):
            return
        if row.status == InboundStatus.RECEIVED:
            failure = await self.s.dispatcher.deliver(
                inbound_id, where.profile_id, tripped=self.tripped
            )
            if failure is not None:
                now = utcnow()
                attempts = row.attempts + 1
                if now - row.received_at > timedelta(seconds=cfg.retry_deadline_s):
                    await db(
                        store.set_status,
                        inbound_id,
                        InboundStatus.FAILED,
                        attempts=attempts,
                        last_error=failure,
                        next_attempt_at=None,
                    )
                else:
                    await db(
                        store.set_status,
                        inbound_id,
                        InboundStatus.RECEIVED,
                        attempts=attempts,
                        last_error=failure,
                        next_attempt_at=next_retry(attempts, now, cfg),
                    )
                return
            await db(store.set_status, inbound_id, InboundStatus.DELIVERED, last_error=None)
        if (row.folder, row.uidvalidity) != (where.folder, where.uidvalidity):
            await db(
                store.set_status,
                inbound_id,
                InboundStatus.DELIVERED,
                next_attempt_at=None,
                last_error="no longer in the folder (its UIDVALIDITY changed); "
                "the processed action was not applied",
            )
            return
        try:
            await _apply(session, imap.processed, row.uid)
        except ImapError as exc:
            if not session.is_open:
                raise  # the connection broke: reconnect; the action stays due
            now = utcnow()
            await db(
                store.set_status,
                inbound_id,
                InboundStatus.DELIVERED,
                attempts=row.attempts + 1,
                last_error=exc.message,
                next_attempt_at=next_retry(row.attempts + 1, now, cfg),
            )
            await db(
                self.s.mailboxes.set_state,
                where.mailbox_id,
                where.owner,
                self.mode,
                error=f"processed action '{imap.processed}' failed: {exc.message}",
                code=str(exc.code),
            )
            return
        await db(store.set_status, inbound_id, InboundStatus.PROCESSED, last_error=None)


async def _apply(session: MailboxSession, processed: str, uid: int) -> None:
    if processed == "mark_seen":
        await session.mark_seen([uid])
    elif processed.startswith("move:"):
        await session.move([uid], processed[5:].strip())
    elif processed == "delete":
        await session.delete([uid])
