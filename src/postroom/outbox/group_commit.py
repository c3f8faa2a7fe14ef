"""Group commit: concurrent REST senders share one durable commit.

Every ``POST /api/v1/messages`` used to pay its own commit (an ``fsync`` on SQLite, a WAL
flush on PostgreSQL) from a thread of its own, and many at once queued on the write lock
(SQLite's busy handler sleeps 1, 2, 5, 10… ms while it waits). Here one writer thread
takes every request waiting when it becomes free, validates and stores them all in one
transaction, commits once and only then answers each one: requests that arrive while a
commit is in flight go into the next one, and a 202 still means "durably stored"
(docs/decisions/0008-rest-send-path.md).

Each request stays all-or-nothing on its own: one caller's bad message is that caller's
422, not its neighbours'. A failed commit answers every request of the group with 503 and
stores none of them. Backpressure: with ``max_depth``, requests are refused with 503 and
``Retry-After`` while more messages than that wait to be sent.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from postroom.errors import Unavailable
from postroom.outbox.service import Outbox, SendRequest
from postroom.senders import SenderScope

__all__ = ["CommitStats", "GroupCommit"]

log = logging.getLogger("postroom.outbox")

#: most messages one commit takes (a request's batch is never split)
MAX_GROUP_MESSAGES = 2000
#: how often the outbox's depth is counted again while requests come in
DEPTH_EVERY_S = 0.5
#: the writer thread ends after this long without requests (started again by the next)
IDLE_EXIT_S = 10.0
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    """A Prometheus histogram kept in this process (cumulative buckets, sum, count)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.total = 0.0
        self.count = 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self.total += value
            self.count += 1
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    self.counts[i] += 1
                    break

    def render(self, name: str, labels: str = "") -> list[str]:
        with self._lock:
            counts, total, count = list(self.counts), self.total, self.count
        sep = "," if labels else ""
        lines, running = [], 0
        for bound, n in zip(self.buckets, counts, strict=True):
            running += n
            lines.append(f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {running}')
        lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {count}')
        braces = f"{{{labels}}}" if labels else ""
        lines += [f"{name}_sum{braces} {total:.6f}", f"{name}_count{braces} {count}"]
        return lines


class CommitStats:
    """What /metrics shows of the send path of this process."""

    def __init__(self) -> None:
        self.messages = Histogram(SIZE_BUCKETS)
        self.requests = Histogram(SIZE_BUCKETS)
        self.seconds = Histogram(LATENCY_BUCKETS_S)
        self.refused = 0

    def render(self) -> list[str]:
        return [
            "# HELP postroom_send_commit_messages Messages stored per group commit (this process).",
            "# TYPE postroom_send_commit_messages histogram",
            *self.messages.render("postroom_send_commit_messages"),
            "# HELP postroom_send_commit_requests REST requests answered per group commit.",
            "# TYPE postroom_send_commit_requests histogram",
            *self.requests.render("postroom_send_commit_requests"),
            "# HELP postroom_send_commit_seconds Time to validate, store and commit one group.",
            "# TYPE postroom_send_commit_seconds histogram",
            *self.seconds.render("postroom_send_commit_seconds"),
            "# HELP postroom_send_refused_total Send requests refused for a full outbox (503).",
            "# TYPE postroom_send_refused_total counter",
            f"postroom_send_refused_total {self.refused}",
        ]


@dataclass(slots=True)
class _Waiting:
    requests: list[SendRequest]
    scope: SenderScope | None
    future: asyncio.Future[list[int]]
    loop: asyncio.AbstractEventLoop


def _settle(future: asyncio.Future[list[int]], result: list[int] | Exception) -> None:
    if future.done():  # the caller went away (its connection closed)
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)


class GroupCommit:
    """The REST send path: ``await send(requests, scope)`` returns the ids once committed."""

    def __init__(self, outbox: Outbox, *, max_depth: int = 0) -> None:
        self._outbox = outbox
        self.max_depth = max_depth
        self.stats = CommitStats()
        self._cond = threading.Condition()
        self._pending: deque[_Waiting] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._depth = 0
        self._depth_at = float("-inf")
        self._last_request = time.monotonic()

    async def send(self, requests: Sequence[SendRequest], scope: SenderScope | None) -> list[int]:
        """Store ``requests`` all or nothing, with whatever else is waiting; raises what
        refused them (ValidationError, PermissionDenied, Unavailable…)."""
        self._last_request = time.monotonic()
        self._check_depth()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        with self._cond:
            if self._closed:
                raise Unavailable("postroom is stopping; send the message again.", retry_after_s=1)
            self._pending.append(_Waiting(list(requests), scope, future, loop))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="postroom-group-commit", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return await future

    def _check_depth(self) -> None:
        if not self.max_depth:
            return
        # a count older than a few refreshes is not believed: the writer thread may be idle
        fresh = time.monotonic() - self._depth_at < 4 * DEPTH_EVERY_S
        if fresh and self._depth >= self.max_depth:
            self.stats.refused += 1
            raise Unavailable(
                f"The outbox holds {self._depth} messages waiting to be sent, more than "
                f"POSTROOM_OUTBOX_MAX_DEPTH ({self.max_depth}): delivery is behind. Nothing "
                "was stored; send the message again after the time in Retry-After.",
                retry_after_s=max(1, round(DEPTH_EVERY_S * 4)),
            )

    def close(self) -> None:
        """Stop the writer once what waits is committed (new requests get 503)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(30)

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            group: list[_Waiting] = []
            with self._cond:
                if not self._pending:
                    idle = time.monotonic() - self._last_request > IDLE_EXIT_S
                    if self._closed or idle:
                        self._thread = None
                        return
                    self._cond.wait(DEPTH_EVERY_S)
                count = 0
                while self._pending and (not group or count < MAX_GROUP_MESSAGES):
                    waiting = self._pending.popleft()
                    group.append(waiting)
                    count += len(waiting.requests)
            if group:
                self._commit(group)
            now = time.monotonic()
            # counted while requests come in (they may be refused for the count), not idle
            recent = now - self._last_request < 8 * DEPTH_EVERY_S
            if self.max_depth and recent and now - self._depth_at >= DEPTH_EVERY_S:
                self._refresh_depth()

    def _commit(self, group: list[_Waiting]) -> None:
        started = time.perf_counter()
        results: Sequence[list[int] | Exception]
        try:
            results = self._outbox.send_groups([(w.requests, w.scope) for w in group])
        except Exception as exc:  # noqa: BLE001 - every waiting caller gets an answer
            log.warning(
                "a group commit of %d request(s) failed (%s); each was answered 503",
                len(group),
                type(exc).__name__,
            )
            failed = Unavailable(
                "The outbox could not store the message (the database failed while "
                "committing); nothing was stored. Send it again.",
                retry_after_s=1,
            )
            results = [failed] * len(group)
        messages = sum(len(w.requests) for w in group)
        self.stats.messages.observe(messages)
        self.stats.requests.observe(len(group))
        self.stats.seconds.observe(time.perf_counter() - started)
        self._depth += messages
        for waiting, result in zip(group, results, strict=True):
            waiting.loop.call_soon_threadsafe(_settle, waiting.future, result)

    def _refresh_depth(self) -> None:
        try:
            self._depth = self._outbox.queue.due_or_in_flight(within_s=0)
        except Exception as exc:  # noqa: BLE001 - counted again next time
            log.warning("could not count the outbox (%s)", type(exc).__name__)
            return
        self._depth_at = time.monotonic()
