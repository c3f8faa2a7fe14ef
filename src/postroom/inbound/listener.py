"""The listener of one profile's folder: lease, connect, sync, wait (IDLE or poll), repeat.

While this process holds the mailbox's lease the listener keeps one connection: each
round reads new mail and retries due messages (:class:`~postroom.inbound.sync.MailboxSync`),
records the state for health, then waits — in IDLE, re-issued every ``idle_renew_s``
(well within the 29 minutes after which servers and firewalls drop idle connections), or
for the poll interval — never longer than until the next retry is due. Connection faults
back off exponentially (with jitter) and reconnect; the lease is renewed in the background
and, once lost, the listener stops touching the mailbox at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from sqlalchemy.exc import SQLAlchemyError

from postroom.db.tables import utcnow
from postroom.diagnostics.steps import Code
from postroom.errors import NotFound, SecretKeyError, SecretReferenceError
from postroom.imap.client import ImapError
from postroom.imap.mailbox import MailboxSession
from postroom.inbound.mailboxes import LeaseLost
from postroom.inbound.schemas import ListenerState
from postroom.inbound.store import Location, describe_failure
from postroom.inbound.sync import Interrupted, Isolation, MailboxSync, SyncServices, db
from postroom.profiles.schemas import ImapSettings, ProfileSpec

__all__ = ["MailboxListener"]

log = logging.getLogger("postroom.inbound")

# This many failed sessions in a row (of any kind) are a loop, shown as "error".
_FAILURE_LOOP = 3

# Failures an administrator must fix; the listener keeps retrying, but shows "error".
_SETTINGS_CODES = frozenset(
    {
        Code.AUTH_FAILED,
        Code.OAUTH2_TOKEN_FAILED,
        Code.AUTH_NOT_OFFERED,
        Code.AUTH_MECHANISM_UNSUPPORTED,
        Code.IMAP_FOLDER_MISSING,
        Code.BLOCKED_BY_POLICY,
        Code.DNS_NOT_FOUND,
        Code.TLS_CERTIFICATE_UNTRUSTED,
        Code.TLS_CERTIFICATE_EXPIRED,
        Code.TLS_HOSTNAME_MISMATCH,
        Code.TLS_WRONG_MODE,
        Code.STARTTLS_NOT_OFFERED,
    }
)


class MailboxListener:
    """Keeps one profile's folder in sync while this process holds its lease.

    ``await run()`` until :meth:`stop`. Another process's listener for the same folder waits
    for the lease and takes over once it expires.
    """

    def __init__(self, services: SyncServices, profile_id: int, folder: str, *, owner: str) -> None:
        self.s = services
        self.profile_id = profile_id
        self.folder = folder
        self.owner = owner
        self.mailbox_id: int | None = None
        self.holding = False  # whether this process holds the lease right now
        self._stop = asyncio.Event()
        self._interrupt = asyncio.Event()  # stop, or lease lost: leave IDLE and sleeps at once
        self._backoff = services.config.backoff_initial_s
        self._isolation = Isolation()  # survives reconnects
        self._failures = 0  # sessions that failed in a row (reset by a completed round)

    def stop(self) -> None:
        """Finish the message in hand, log out, give the lease up and return from run()."""
        self._stop.set()
        self._interrupt.set()

    async def run(self) -> None:
        cfg = self.s.config
        waiting_logged = False
        while not self._stop.is_set():
            try:
                if self.mailbox_id is None:
                    self.mailbox_id = await db(
                        self.s.mailboxes.ensure, self.profile_id, self.folder
                    )
                if not await db(
                    self.s.mailboxes.acquire, self.mailbox_id, self.owner, lease_s=cfg.lease_s
                ):
                    if not waiting_logged:
                        log.info(
                            "inbound: profile %s is synced elsewhere; waiting for its lease",
                            self.profile_id,
                        )
                        waiting_logged = True
                    await self._sleep(cfg.lease_s / 3, self._stop)
                    continue
            except SQLAlchemyError as exc:
                log.warning("inbound: database unavailable (%s); retrying", type(exc).__name__)
                await self._sleep(self._next_backoff(), self._stop)
                continue
            waiting_logged = False
            self.holding = True
            log.info(
                "inbound: %s listens to profile %s, folder %s",
                self.owner,
                self.profile_id,
                self.folder,
            )
            self._interrupt = asyncio.Event()
            if self._stop.is_set():
                self._interrupt.set()
            keeper = asyncio.create_task(self._keep_lease(self.mailbox_id))
            try:
                await self._hold(self.mailbox_id)
            except LeaseLost:
                log.warning("inbound: %s lost the lease of profile %s", self.owner, self.profile_id)
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
                self.holding = False
        if self.mailbox_id is not None:
            with contextlib.suppress(SQLAlchemyError):
                await db(self.s.mailboxes.release, self.mailbox_id, self.owner)

    # -- holding the lease ----------------------------------------------------------------------

    async def _keep_lease(self, mailbox_id: int) -> None:
        cfg = self.s.config
        while True:
            await asyncio.sleep(cfg.lease_s / 3)
            try:
                kept = await db(self.s.mailboxes.renew, mailbox_id, self.owner, lease_s=cfg.lease_s)
            except SQLAlchemyError:
                continue  # a write after the lease ran out is refused anyway
            if not kept:
                self._interrupt.set()
                return

    async def _hold(self, mailbox_id: int) -> None:
        """Sessions one after the other, backing off between failures, until interrupted.

        Once a session has failed, the state keeps showing that failure (``backoff``, or
        ``error`` for settings faults and for any fault that repeats) until a sync round
        succeeds again: a retry does not write ``starting`` over it, so health does not
        flap while sign-in keeps failing, and a loop never looks like a start.
        """
        while not self._interrupt.is_set():
            error, code, settings = "", "", False
            try:
                if not self._failures:
                    await self._state(mailbox_id, ListenerState.STARTING)
                spec = await db(self.s.profiles.spec_by_id, self.profile_id)
                await self._session(mailbox_id, spec)
            except Interrupted:
                pass
            except LeaseLost:
                raise
            except ImapError as exc:
                error, code = exc.message, str(exc.code)
                settings = exc.code in _SETTINGS_CODES
            except (SecretReferenceError, SecretKeyError) as exc:
                error, code, settings = exc.message, str(Code.SECRET_UNAVAILABLE), True
            except NotFound as exc:  # deleted or no longer receiving: the runner stops us
                error, code, settings = exc.message, exc.code, True
            except SQLAlchemyError as exc:
                log.warning("inbound: database error (%s); reconnecting", type(exc).__name__)
                error, code = f"database error: {describe_failure(exc)}", "database_error"
            except Exception as exc:  # noqa: BLE001 - a listener must never die silently
                log.exception("inbound: listener of profile %s failed", self.profile_id)
                error, code = f"internal error: {describe_failure(exc)}", "internal_error"
            if self._interrupt.is_set():
                return
            if error:
                self._failures += 1
                looping = self._failures >= _FAILURE_LOOP
                state = ListenerState.ERROR if settings or looping else ListenerState.BACKOFF
                if looping and not settings:
                    error = f"{error} (failed {self._failures} times in a row)"
                log.warning("inbound: profile %s: %s", self.profile_id, error)
                with contextlib.suppress(SQLAlchemyError):
                    await self._state(mailbox_id, state, error=error, code=code)
            await self._sleep(self._next_backoff())

    def _next_backoff(self) -> float:
        cfg = self.s.config
        wait = self._backoff * random.uniform(0.8, 1.2)
        self._backoff = min(self._backoff * 2, cfg.backoff_max_s)
        return wait

    # -- one connection -------------------------------------------------------------------------

    async def _session(self, mailbox_id: int, spec: ProfileSpec) -> None:
        imap = spec.imap
        if imap is None:
            raise NotFound("This profile no longer receives mail (no IMAP settings).")
        session = await MailboxSession.open(
            imap,
            policy=self.s.policy,
            timeout=imap.connect_timeout_s,
            limits=self.s.config.imap_limits,
        )
        try:
            await session.login()
            status = await session.open_mailbox(imap.folder)
            position = await db(
                self.s.mailboxes.position, mailbox_id, self.owner, status.uidvalidity
            )
            if position.resync:
                log.warning(
                    "inbound: UIDVALIDITY of %s changed (%s -> %s); reading the folder "
                    "again, skipping messages stored before",
                    imap.folder,
                    position.previous_uidvalidity,
                    status.uidvalidity,
                )
            where = Location(
                mailbox_id, self.owner, self.profile_id, spec.name, imap.folder, status.uidvalidity
            )
            sync = MailboxSync(
                self.s, session, where, imap, self._interrupt, isolation=self._isolation
            )
            last_uid, uidnext = position.last_uid, status.uidnext
            while not self._interrupt.is_set():
                sync.tripped = set()
                if sync.mode is ListenerState.POLLING:
                    await session.noop()  # lets the server report new messages
                last_uid = await sync.new_mail(last_uid, uidnext)
                await sync.retry_due()
                await self._state(mailbox_id, sync.mode, polled=True)
                # a whole round worked: the next failure starts a fresh backoff
                self._failures = 0
                self._backoff = self.s.config.backoff_initial_s
                wait = await self._wait_time(imap, sync.mode)
                if sync.mode is ListenerState.IDLE:
                    await self._idle(session, wait)
                else:
                    await self._sleep(wait)
        finally:
            await session.logout()

    async def _wait_time(self, imap: ImapSettings, mode: ListenerState) -> float:
        cfg = self.s.config
        if mode is ListenerState.IDLE:
            wait = cfg.idle_renew_s
        else:
            wait = cfg.poll_interval_s or imap.poll_interval_s
        due = await db(self.s.store.next_due, self.profile_id, imap.folder)
        if due is not None:
            wait = min(wait, max((due - utcnow()).total_seconds(), 0.05))
        return wait

    async def _idle(self, session: MailboxSession, wait: float) -> None:
        idling = asyncio.create_task(session.idle(wait))
        interrupted = asyncio.create_task(self._interrupt.wait())
        await asyncio.wait({idling, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        interrupted.cancel()
        if not idling.done():
            idling.cancel()  # closes the connection: IDLE cannot be left from outside
            with contextlib.suppress(asyncio.CancelledError, ImapError):
                await idling
            raise Interrupted
        idling.result()

    # -- small helpers ----------------------------------------------------------------------------

    async def _state(
        self,
        mailbox_id: int,
        state: ListenerState,
        *,
        error: str | None = None,
        code: str | None = None,
        polled: bool = False,
    ) -> None:
        await db(
            self.s.mailboxes.set_state,
            mailbox_id,
            self.owner,
            state,
            error=error,
            code=code,
            polled=polled,
        )

    async def _sleep(self, seconds: float, until: asyncio.Event | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for((until or self._interrupt).wait(), seconds)
