"""Runs a listener for every enabled receiving profile, in ``serve`` or ``inbound run``.

Every ``rescan_s`` the runner compares the profiles in the database with its listeners:
a new or re-enabled profile gets one, a disabled or deleted profile's listener stops, an
edited profile's listener restarts with the new settings. Listeners of several processes
share the work through per-mailbox leases: each mailbox is synced by exactly one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from postroom.db.tables import Profile, utcnow
from postroom.inbound.listener import MailboxListener
from postroom.inbound.parsing import ParserUnavailable
from postroom.inbound.retention import InboundRetention
from postroom.inbound.sync import SyncServices

__all__ = ["InboundRunner"]

log = logging.getLogger("postroom.inbound")
_STOP_GRACE_S = 10.0
_PURGE_EVERY_S = 3600.0


@dataclass
class _Running:
    listener: MailboxListener
    task: asyncio.Task[None]
    version: int


class InboundRunner:
    """``await run()`` until :meth:`stop`; ``name`` identifies this process in leases."""

    def __init__(
        self,
        services: SyncServices,
        *,
        name: str | None = None,
        retention: InboundRetention | None = None,
        retention_days: int = 0,
    ) -> None:
        self.s = services
        self._retention = retention
        self._retention_days = retention_days
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = asyncio.Event()
        self._running: dict[int, _Running] = {}

    def stop(self) -> None:
        """Stop every listener (each finishes its message and gives its lease up)."""
        self._stop.set()

    def listening(self) -> list[int]:
        """Ids of the profiles whose mailbox this process holds the lease of right now."""
        return sorted(pid for pid, r in self._running.items() if r.listener.holding)

    async def run(self) -> None:
        # the parser process starts while the listeners sign in, not with the first message
        warming = asyncio.create_task(asyncio.to_thread(self._start_parser))
        purging = asyncio.create_task(self._purge_periodically())
        try:
            while not self._stop.is_set():
                try:
                    wanted = await asyncio.to_thread(self._wanted)
                except SQLAlchemyError as exc:
                    log.warning("inbound: cannot read profiles (%s)", type(exc).__name__)
                else:
                    await self._reconcile(wanted)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.s.config.rescan_s)
        finally:
            await asyncio.gather(*(self._end(pid) for pid in list(self._running)))
            await purging  # it ends with the stop: a purge in hand finishes its chunk first
            await warming
            await asyncio.to_thread(self.s.parser.close)

    async def _purge_periodically(self) -> None:
        """Retention: every hour, delete messages done with for ``retention_days``."""
        if self._retention is None or not self._retention_days:
            return
        while not self._stop.is_set():
            before = utcnow() - timedelta(days=self._retention_days)
            try:
                count = await asyncio.to_thread(self._retention.purge, before=before)
            except SQLAlchemyError as exc:
                log.warning("inbound retention: database unavailable (%s)", type(exc).__name__)
            else:
                if count:
                    log.info("inbound retention: deleted %d message(s) received before %s",
                             count, before)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), _PURGE_EVERY_S)

    def _start_parser(self) -> None:
        try:
            self.s.parser.start()
        except ParserUnavailable as exc:  # each listener shows it as its error
            log.error("inbound: %s", exc.message)

    def _wanted(self) -> dict[int, tuple[int, str]]:
        """Enabled profiles with IMAP: id → (version, folder)."""
        with self.s.sessions() as s:
            rows = s.execute(
                select(Profile.id, Profile.enabled, Profile.spec, Profile.version)
            ).all()
        wanted: dict[int, tuple[int, str]] = {}
        for pid, enabled, spec, version in rows:
            imap = (spec or {}).get("imap")
            if enabled and imap:
                wanted[pid] = (version, str(imap.get("folder") or "INBOX"))
        return wanted

    async def _reconcile(self, wanted: dict[int, tuple[int, str]]) -> None:
        for pid in list(self._running):
            running = self._running[pid]
            if pid not in wanted or wanted[pid][0] != running.version or running.task.done():
                await self._end(pid)
        for pid, (version, folder) in wanted.items():
            if pid not in self._running:
                listener = MailboxListener(self.s, pid, folder, owner=self.name)
                task = asyncio.create_task(listener.run(), name=f"postroom-inbound-{pid}")
                self._running[pid] = _Running(listener, task, version)

    async def _end(self, pid: int) -> None:
        running = self._running.pop(pid, None)
        if running is None:
            return
        running.listener.stop()
        done, _ = await asyncio.wait({running.task}, timeout=_STOP_GRACE_S)
        if not done:
            running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running.task
        elif not running.task.cancelled() and running.task.exception() is not None:
            log.error("inbound listener of profile %s died", pid, exc_info=running.task.exception())
