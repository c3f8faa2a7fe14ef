"""The delivery worker: claims due messages and sends them over pooled connections.

One asyncio task per open connection; connections are kept per profile and reused for
many messages. Database work (claim, complete) runs in a thread, batched.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import aiosmtplib
from sqlalchemy.exc import DBAPIError

from postroom.db.tables import utcnow
from postroom.outbox.queue import Claim, Delivery
from postroom.outbox.wakeup import CommitWatch
from postroom.profiles.schemas import ProfileSpec
from postroom.smtp.client import SmtpConnectError, open_smtp
from postroom.smtp.esmtp import Offers, offers_from, refuse_before_sending
from postroom.smtp.pipeline import NotSent, PipelineBroken, PipelinedSession, TransactionResult
from postroom.smtp.replies import Outcome, Refusal, classify, rcpt_refusal

if TYPE_CHECKING:
    from postroom.app import Postroom

__all__ = ["Worker"]

log = logging.getLogger("postroom.worker")

_IDLE_CLOSE_S = 15.0
_PURGE_EVERY_S = 3600.0
_WATCH_S = 0.01  # how often an idle worker on SQLite looks for commits
_NO_SLOT = "no connection slot is free (max_connections reached by other workers)"


@dataclass
class _Conn:
    """An open session: plain aiosmtplib, or pipelined when the server offers PIPELINING."""

    client: aiosmtplib.SMTP
    slot: int
    owner: str
    pipe: PipelinedSession | None = None
    #: SIZE and SMTPUTF8 as the server's EHLO offered them
    offers: Offers = field(default_factory=Offers)
    last_used: float = field(default_factory=time.monotonic)

    @property
    def is_connected(self) -> bool:
        return self.pipe.is_connected if self.pipe is not None else self.client.is_connected

    async def quit(self) -> None:
        if self.pipe is not None:
            await self.pipe.quit()
            return
        try:
            await asyncio.wait_for(self.client.quit(), 2)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass

    def close(self) -> None:
        if self.pipe is not None:
            self.pipe.close()
        else:
            self.client.close()


@dataclass
class _ProfileState:
    spec: ProfileSpec
    loaded: float
    idle: list[_Conn] = field(default_factory=list)
    open_count: int = 0
    last_error: str = ""
    last_code: int | None = None


def _refused(r: TransactionResult) -> dict[str, dict[str, object]]:
    """The recipients the server refused, with its reply to each."""
    return {a: {"code": x.code, "text": x.text} for a, x in r.rcpts.items() if x.code >= 300}


def _refused_what(code: int, text: str) -> str:
    """Postfix refuses a sender it won't take in its reply to RCPT TO: name the real cause."""
    if rcpt_refusal(code, text, signed_in=True) is Refusal.SENDER:
        return "sender refused (at RCPT TO)"
    return "recipients refused"


class Worker:
    """Delivers the outbox. ``await run()``; call :meth:`stop` (or SIGTERM in the CLI) to end."""

    def __init__(
        self,
        app: Postroom,
        *,
        name: str | None = None,
        batch: int = 500,
        lease_s: float = 60.0,
        poll_s: float = 0.5,
    ) -> None:
        self.app = app
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.batch = batch
        self.lease_s = lease_s
        self.poll_s = poll_s
        self._stop = asyncio.Event()
        self._profiles: dict[int, _ProfileState] = {}
        #: every claim this worker holds until its outcome is written or it is released
        self._in_hand: dict[int, Claim] = {}
        self.sent = 0
        self.failed = 0
        self.retried = 0

    def stop(self) -> None:
        """Finish the messages in hand, release the rest, and return from :meth:`run`."""
        self._stop.set()

    async def run(self, *, drain: bool = False) -> None:
        """Deliver until stopped; with ``drain``, return once nothing is due.

        Database work overlaps delivery: while one batch is on the wire, the previous
        batch's outcomes are written and the next batch is claimed, in one transaction
        (docs/decisions/0004, 0007).
        """
        backoff = 0.5
        next_digests = 0.0
        next_purge = 0.0
        claims: list[Claim] = []  # claimed, to deliver next
        done: list[Delivery] = []  # delivered, outcomes not yet written
        cycle: asyncio.Task[list[Claim]] | None = None
        keeper = asyncio.create_task(self._keep_leases())
        watch = CommitWatch(self.app.engine)
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + _PURGE_EVERY_S
                    await self._purge()
                if time.monotonic() >= next_digests:
                    # summaries due this period are enqueued exactly once, whichever worker
                    # gets there first (a unique row per subscription and period)
                    next_digests = time.monotonic() + 30
                    try:
                        await asyncio.to_thread(self.app.notifications.run_due_digests)
                    except DBAPIError as exc:
                        log.warning("summaries: database unavailable (%s)", type(exc.orig).__name__)
                cycle = asyncio.create_task(self._cycle(done))
                done = await self._deliver(claims) if claims else []
                try:
                    task, cycle = cycle, None
                    claims = await task
                except DBAPIError as exc:
                    # the database restarted or is unreachable: wait and try again; messages
                    # in flight stay leased and another attempt picks them up after the lease
                    log.warning(
                        "worker %s: database unavailable (%s); retrying in %.1f s",
                        self.name,
                        type(exc.orig).__name__,
                        backoff,
                    )
                    claims = []
                    try:
                        await asyncio.wait_for(self._stop.wait(), backoff)
                    except TimeoutError:
                        pass
                    backoff = min(backoff * 2, 10.0)
                    continue
                backoff = 0.5
                if not claims and not done:
                    if drain and not await asyncio.to_thread(self._anything_pending):
                        return
                    await self._close_idle()
                    await self._idle(watch)
        finally:
            if cycle is not None:
                # database work running in a thread can't be called back: let it finish
                try:
                    claims += await cycle
                except DBAPIError:
                    pass
            if done:
                self._finish(done, await self._complete(done))
            if claims:
                try:
                    await self._release(claims)
                except Exception as exc:  # noqa: BLE001 - their leases expire; another worker takes them
                    log.warning(
                        "worker %s: could not give back claimed messages: %s", self.name, exc
                    )
            keeper.cancel()
            watch.close()
            await self._close_all()

    async def _cycle(self, done: list[Delivery]) -> list[Claim]:
        """Write the outcomes of ``done`` and claim the next batch (none once stopping),
        in one transaction when there are both."""
        queue, claim = self.app.outbox.queue, not self._stop.is_set()
        if not done:
            return await self._claim() if claim else []
        if not claim:
            self._finish(done, await self._complete(done))
            return []
        try:
            refused, claims = await asyncio.to_thread(
                queue.complete_and_claim, done, self.name, limit=self.batch, lease_s=self.lease_s
            )
        except DBAPIError:
            # nothing was written: the outcomes on their own, retried while the lease
            # lasts; the claim's failure goes to the caller (wait for the database)
            self._finish(done, await self._complete(done))
            raise
        self._finish(done, refused)
        for c in claims:
            self._in_hand[c.id] = c
        return claims

    async def _idle(self, watch: CommitWatch) -> None:
        """Wait up to ``poll_s`` for new mail: until stopped, or (SQLite) until anyone
        commits, which is looked at every few milliseconds."""
        deadline = time.monotonic() + self.poll_s
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            step = min(left, _WATCH_S) if watch.available else left
            try:
                await asyncio.wait_for(self._stop.wait(), step)
            except TimeoutError:
                pass
            if watch.changed():
                return

    async def _purge(self) -> None:
        """Retention: delete final messages older than ``outbox_retention_days``."""
        days = self.app.settings.outbox_retention_days
        if not days:
            return
        before = utcnow() - timedelta(days=days)
        try:
            count = await asyncio.to_thread(self.app.outbox.queue.purge, before=before)
        except DBAPIError as exc:
            log.warning("retention: database unavailable (%s)", type(exc.orig).__name__)
            return
        if count:
            log.info("retention: deleted %d message(s) finished before %s", count, before)

    async def _claim(self) -> list[Claim]:
        claims = await asyncio.to_thread(
            self.app.outbox.queue.claim, self.name, limit=self.batch, lease_s=self.lease_s
        )
        for c in claims:
            self._in_hand[c.id] = c
        return claims

    async def _release(self, claims: list[Claim], *, due_at: datetime | None = None) -> None:
        """Give claims back untried (shutdown, rate limit, no free connection)."""
        try:
            await asyncio.to_thread(self.app.outbox.queue.release, claims, due_at=due_at)
        finally:
            for c in claims:
                self._in_hand.pop(c.id, None)

    def _finish(self, deliveries: list[Delivery], refused_ids: list[int]) -> None:
        """Account for outcomes written (all but ``refused_ids``) and let their claims go."""
        refused = set(refused_ids)
        for d in deliveries:
            self._in_hand.pop(d.claim.id, None)
        if refused:
            log.warning(
                "worker %s lost the lease of %d message(s) before finishing; "
                "another worker owns them now, so its results were not written",
                self.name,
                len(refused),
            )
        for d in deliveries:
            if d.claim.id in refused or d.release:
                continue
            if d.outcome is Outcome.SENT:
                self.sent += 1
            elif d.outcome is Outcome.PERMANENT:
                self.failed += 1
            else:
                self.retried += 1

    async def _keep_leases(self) -> None:
        """Renew the leases of every message in hand (being delivered, claimed ahead, or
        waiting for its outcome to be written) while a slow server keeps us busy."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            held = list(self._in_hand.values())
            if not held:
                continue
            try:
                await asyncio.to_thread(self.app.outbox.queue.extend, held, lease_s=self.lease_s)
            except DBAPIError:
                continue

    async def _complete(self, deliveries: list[Delivery]) -> list[int]:
        """Write outcomes, retrying while the database is away (until our lease would end)."""
        give_up = time.monotonic() + self.lease_s
        delay = 0.5
        while True:
            try:
                return await asyncio.to_thread(self.app.outbox.queue.complete, deliveries)
            except DBAPIError as exc:
                if time.monotonic() + delay > give_up:
                    # the lease is gone by now: another worker will try these again
                    log.error(
                        "worker %s: could not record %d outcome(s): %s",
                        self.name,
                        len(deliveries),
                        type(exc.orig).__name__,
                    )
                    return [d.claim.id for d in deliveries]
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _anything_pending(self) -> bool:
        """Due now, or in flight elsewhere (a crashed worker's lease still to expire)."""
        try:
            return self.app.outbox.queue.due_or_in_flight() > 0
        except DBAPIError:
            return True  # can't tell while the database is away: keep going

    # -- delivery ---------------------------------------------------------------------------

    async def _spec(self, profile_id: int) -> _ProfileState:
        state = self._profiles.get(profile_id)
        if state is None or time.monotonic() - state.loaded > 10:
            spec = await asyncio.to_thread(self.app.profiles.spec_by_id, profile_id)
            if state is None:
                state = _ProfileState(spec=spec, loaded=time.monotonic())
                self._profiles[profile_id] = state
            else:
                state.spec, state.loaded = spec, time.monotonic()
        return state

    async def _deliver(self, claims: list[Claim]) -> list[Delivery]:
        groups: dict[int, list[Claim]] = defaultdict(list)
        for c in claims:
            groups[c.profile_id].append(c)
        results = await asyncio.gather(
            *(self._deliver_profile(pid, cs) for pid, cs in groups.items())
        )
        return [d for group in results for d in group]

    async def _deliver_profile(self, profile_id: int, claims: list[Claim]) -> list[Delivery]:
        try:
            return await self._deliver_profile_unguarded(profile_id, claims)
        except DBAPIError as exc:
            log.warning(
                "worker %s: database unavailable while delivering (%s); "
                "messages go back to the queue",
                self.name,
                type(exc.orig).__name__,
            )
            return [
                Delivery(claim=c, outcome=Outcome.TRANSIENT, code=None, text="database unavailable",
                         worker=self.name, release=True)
                for c in claims
            ]  # fmt: skip

    async def _deliver_profile_unguarded(
        self, profile_id: int, claims: list[Claim]
    ) -> list[Delivery]:
        try:
            state = await self._spec(profile_id)
        except DBAPIError:
            raise
        except Exception as exc:  # noqa: BLE001 - a profile that can't be loaded fails its messages
            return [
                self._result(c, Outcome.TRANSIENT, None, f"profile unavailable: {exc}")
                for c in claims
            ]
        granted = len(claims)
        if state.spec.rate_limit_per_minute is not None:
            granted = await asyncio.to_thread(
                self.app.limits.reserve, profile_id, len(claims), state.spec.rate_limit_per_minute
            )
        if granted < len(claims):
            next_window = utcnow().replace(second=0, microsecond=0) + timedelta(minutes=1)
            await self._release(claims[granted:], due_at=next_window)
            claims = claims[:granted]
        if not claims:
            return []
        conns = await self._connections(profile_id, state, len(claims))
        if not conns:
            if state.last_code is None and state.last_error == _NO_SLOT:
                # other workers hold every connection: not an attempt, just wait a moment
                await self._release(claims, due_at=utcnow() + timedelta(seconds=1))
                return []
            return [
                self._result(c, Outcome.TRANSIENT, state.last_code, state.last_error)
                for c in claims
            ]
        chunks: list[list[Claim]] = [claims[i :: len(conns)] for i in range(len(conns))]
        results = await asyncio.gather(
            *(
                self._send_over(profile_id, state, conn, chunk)
                for conn, chunk in zip(conns, chunks, strict=True)
            )
        )
        return [d for group in results for d in group]

    async def _connections(self, profile_id: int, state: _ProfileState, wanted: int) -> list[_Conn]:
        wanted = min(wanted, state.spec.max_connections)
        state.last_error, state.last_code = _NO_SLOT, None
        conns: list[_Conn] = []
        while state.idle and len(conns) < wanted:
            conn = state.idle.pop()
            if conn.is_connected:
                conns.append(conn)
            else:
                await self._discard(profile_id, state, conn)
        while len(conns) < wanted:
            owner = f"{self.name}:{uuid.uuid4().hex[:8]}"
            slot = await asyncio.to_thread(
                self.app.limits.acquire_slot,
                profile_id,
                state.spec.max_connections,
                owner,
                lease_s=self.lease_s,
            )
            if slot is None:
                break
            try:
                client = await open_smtp(state.spec.smtp, policy=self.app.policy)
            except SmtpConnectError as exc:
                await asyncio.to_thread(self.app.limits.release_slot, profile_id, slot, owner)
                state.last_error = f"cannot connect: {exc.message}"
                state.last_code = exc.code
                break
            state.open_count += 1
            offers = offers_from(client.esmtp_extensions)
            conn = _Conn(client=client, slot=slot, owner=owner, offers=offers)
            if client.supports_extension("pipelining") and client.transport is not None:
                conn.pipe = PipelinedSession(
                    client.transport,  # type: ignore[arg-type]
                    timeout=state.spec.smtp.send_timeout_s,
                    params=offers.params,
                )
            conns.append(conn)
        return conns

    async def _send_over(
        self, profile_id: int, state: _ProfileState, conn: _Conn, claims: list[Claim]
    ) -> list[Delivery]:
        out: list[Delivery] = []
        alive = True
        offers = conn.offers
        if offers.size or not offers.smtputf8:
            # what the server can't take fails here, before its bytes are sent
            sendable = []
            for c in claims:
                refusal = refuse_before_sending(c.envelope_from, c.recipients, c.raw, offers)
                if refusal is None:
                    sendable.append(c)
                else:
                    out.append(self._result(c, Outcome.PERMANENT, *refusal))
            claims = sendable
        if conn.pipe is not None:
            started = time.perf_counter()
            # stored bodies were composed by postroom, which refuses any with a bare CR or LF
            results = await conn.pipe.send_all(
                [(c.envelope_from, c.recipients, c.raw) for c in claims], crlf_only=True
            )
            per_message = (time.perf_counter() - started) * 1000 / max(1, len(claims))
            for c, r in zip(claims, results, strict=True):
                d = self._from_pipeline(c, r)
                d.duration_ms = per_message
                out.append(d)
            alive = conn.pipe.is_connected
        else:
            for c in claims:
                if not alive:
                    out.append(self._not_sent(c))
                    continue
                started = time.perf_counter()
                d, alive = await self._send_one(conn.client, c, offers)
                d.duration_ms = (time.perf_counter() - started) * 1000
                out.append(d)
        conn.last_used = time.monotonic()
        if alive and conn.is_connected:
            state.idle.append(conn)
        else:
            await self._discard(profile_id, state, conn)
        return out

    async def _send_one(
        self, client: aiosmtplib.SMTP, c: Claim, offers: Offers
    ) -> tuple[Delivery, bool]:
        try:
            errors, reply = await client.sendmail(
                c.envelope_from,
                c.recipients,
                c.raw,
                mail_options=offers.mail_options(c.envelope_from, c.recipients, c.raw),
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            results = {r.recipient: {"code": r.code, "text": r.message} for r in exc.recipients}
            codes = [r.code for r in exc.recipients]
            code = next((x for x in codes if 400 <= x < 500), codes[0] if codes else None)
            first = exc.recipients[0]
            return self._result(
                c,
                classify(code),
                code,
                f"{_refused_what(first.code, first.message)}: {first.code} {first.message}",
                results,
            ), True
        except aiosmtplib.SMTPResponseException as exc:
            alive = exc.code not in (421,)
            return self._result(c, classify(exc.code), exc.code, f"{exc.code} {exc.message}"), alive
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return self._result(c, Outcome.TRANSIENT, None, f"{type(exc).__name__}: {exc}"), False
        partial = {r: {"code": v.code, "text": v.message} for r, v in errors.items()}
        return self._result(
            c, Outcome.SENT, 250, reply.splitlines()[0][:500] if reply else "250", partial or None
        ), True

    def _not_sent(self, c: Claim) -> Delivery:
        """Never tried (its connection died before it): back to the queue, no attempt counted,
        so one bad recipient or stalled transaction holds back no other mail."""
        d = self._result(
            c, Outcome.TRANSIENT, None, "not sent: connection lost earlier in the batch"
        )
        d.release = True
        return d

    def _from_pipeline(self, c: Claim, r: TransactionResult | PipelineBroken) -> Delivery:
        if isinstance(r, NotSent):
            return self._not_sent(c)
        if isinstance(r, PipelineBroken):
            return self._result(c, Outcome.TRANSIENT, None, str(r))
        final = r.final
        if final is not None and 200 <= final.code < 300:
            # sent; a single recipient was accepted, or no body would have been sent
            refused = _refused(r) if len(r.rcpts) > 1 else {}
            text = final.text.partition("\n")[0][:500] or str(final.code)
            return Delivery(c, Outcome.SENT, final.code, text, self.name, 0.0, refused or None)
        refused = _refused(r)
        if r.mail.code >= 300:
            return self._result(
                c,
                classify(r.mail.code),
                r.mail.code,
                f"sender refused: {r.mail.code} {r.mail.text}",
            )
        if len(refused) == len(r.rcpts):
            codes = [x.code for x in r.rcpts.values()]
            code = next((x for x in codes if 400 <= x < 500), codes[0])
            first = next(iter(r.rcpts.values()))
            what = _refused_what(first.code, first.text)
            return self._result(
                c, classify(code), code, f"{what}: {first.code} {first.text}", refused
            )
        reply = r.final if r.final is not None else r.data
        assert reply is not None
        return self._result(
            c, classify(reply.code), reply.code, f"{reply.code} {reply.text}", refused or None
        )

    def _result(
        self,
        c: Claim,
        outcome: Outcome,
        code: int | None,
        text: str,
        recipient_results: dict[str, dict[str, object]] | None = None,
    ) -> Delivery:
        return Delivery(
            claim=c, outcome=outcome, code=code, text=text, worker=self.name,
            recipient_results=recipient_results,
        )  # fmt: skip

    # -- connection housekeeping --------------------------------------------------------------

    async def _discard(self, profile_id: int, state: _ProfileState, conn: _Conn) -> None:
        conn.close()
        state.open_count -= 1
        await asyncio.to_thread(self.app.limits.release_slot, profile_id, conn.slot, conn.owner)

    async def _close_idle(self) -> None:
        now = time.monotonic()
        for pid, state in self._profiles.items():
            keep = []
            for conn in state.idle:
                if now - conn.last_used > _IDLE_CLOSE_S:
                    await conn.quit()
                    await self._discard(pid, state, conn)
                else:
                    keep.append(conn)
            state.idle = keep
        if any(s.idle for s in self._profiles.values()):
            await asyncio.to_thread(self.app.limits.renew_slots, self.name, lease_s=self.lease_s)

    async def _close_all(self) -> None:
        for pid, state in self._profiles.items():
            for conn in state.idle:
                await conn.quit()
                await self._discard(pid, state, conn)
            state.idle = []
