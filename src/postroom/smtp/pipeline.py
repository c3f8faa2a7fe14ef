"""SMTP PIPELINING (RFC 2920) for the delivery data path.

aiosmtplib sets the session up (greeting, EHLO, STARTTLS, AUTH) and then hands its
transport to :class:`PipelinedSession`, which sends each transaction's envelope
(MAIL, every RCPT, DATA) in one write, and the message body together with the next
message's envelope: about one round trip per message instead of four. It is used only
when the server advertises PIPELINING. Why: docs/decisions/0003-delivery-speed.md.

Replies are read with bounded lines; bodies leave with CRLF line endings, leading dots
doubled and exactly one end-of-data marker.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "NotSent",
    "PipelineBroken",
    "PipelinedSession",
    "Reply",
    "TransactionResult",
    "dot_stuff",
]

_MAX_LINE = 4096
_LONE_LF = re.compile(rb"(?<!\r)\n")
_LONE_CR = re.compile(rb"\r(?!\n)")


def dot_stuff(raw: bytes, *, crlf_only: bool = False) -> bytes:
    """The DATA section for ``raw``: CRLF only, leading dots doubled, one end marker.

    ``crlf_only``: the caller vouches that ``raw`` has no bare CR or LF — postroom's own
    composition checks every message it stores — so the three counts over the whole
    message that would tell (≈ 4 µs for 2 KB, per message sent) are skipped.
    """
    if not (crlf_only or raw.count(b"\n") == raw.count(b"\r\n") == raw.count(b"\r")):
        raw = _LONE_CR.sub(b"\r\n", _LONE_LF.sub(b"\r\n", raw))
    # CRLF only now: byte-level replaces suffice
    data = raw.replace(b"\r\n.", b"\r\n..")
    if data[:1] == b".":
        data = b"." + data
    return data + (b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n")


def _any_accepted(rcpts: dict[str, Reply]) -> bool:
    for r in rcpts.values():
        if 200 <= r.code < 300:
            return True
    return False


class Reply(NamedTuple):
    """A reply: its code and its text (lines joined by newlines). A named tuple: five
    are made per message, and frozen dataclasses cost several times more to make."""

    code: int
    text: str


@dataclass(slots=True)
class TransactionResult:
    """One message's replies: ``mail``, one per recipient, ``data`` (354 or refusal), ``final``."""

    mail: Reply
    rcpts: dict[str, Reply]
    data: Reply | None
    final: Reply | None

    @property
    def accepted(self) -> bool:
        return self.final is not None and 200 <= self.final.code < 300


class PipelineBroken(Exception):
    """The connection failed during this message's transaction (it may or may not have arrived)."""


class NotSent(PipelineBroken):
    """The connection failed before this message's transaction began: it was not sent."""

    def __init__(self) -> None:
        super().__init__("not sent: the connection failed earlier in the batch")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.replies: deque[Reply] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.closed: BaseException | None = None
        self._lines: list[str] = []
        #: loop time since when we have waited for a reply and heard nothing
        self.waiting_since: float | None = None
        #: how many buffered replies the waiter needs before it is woken
        self.wanted = 1

    def data_received(self, data: bytes) -> None:
        if self.closed is not None:
            return
        *lines, rest = (self.buffer + data if self.buffer else data).split(b"\n")
        if len(rest) > _MAX_LINE:
            self._fail(PipelineBroken("reply line too long"))
            return
        self.buffer = rest
        replies = self.replies
        before = len(replies)
        for raw in lines:
            line = raw.rstrip(b"\r")
            if len(line) > _MAX_LINE:
                self._fail(PipelineBroken("reply line too long"))
                return
            if len(line) < 3 or not line[:3].isdigit():
                self._fail(PipelineBroken(f"malformed reply {line[:80]!r}"))
                return
            self._lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                replies.append(Reply(int(line[:3]), "\n".join(self._lines)))
                self._lines = []
        if len(replies) > before:
            waiter = self.waiter
            if waiter is None or waiter.done():
                self.waiting_since = None
            elif len(replies) >= self.wanted:
                # one wake-up for all the replies a transaction needs, not one per reply
                self.waiting_since = None
                waiter.set_result(None)
            else:
                # the server is answering, if not all at once: the send timeout restarts
                self.waiting_since = asyncio.get_running_loop().time()

    def _fail(self, exc: BaseException) -> None:
        self.closed = exc
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(PipelineBroken(f"connection lost ({exc or 'closed by server'})"))

    def eof_received(self) -> bool | None:
        self._fail(PipelineBroken("the server closed the connection"))
        return None


class PipelinedSession:
    """Send many transactions over a set-up transport, pipelined."""

    def __init__(self, transport: asyncio.Transport, *, timeout: float | None) -> None:
        self._protocol = _Protocol()
        transport.set_protocol(self._protocol)
        self._transport = transport
        self._timeout = timeout
        self._watch: asyncio.TimerHandle | None = None

    @property
    def is_connected(self) -> bool:
        return self._protocol.closed is None and not self._transport.is_closing()

    async def _replies(self, count: int) -> list[Reply]:
        """The next ``count`` replies, woken once when all have come. The send timeout is
        kept by :meth:`_watchdog`, one timer per session rather than one per reply (a
        timer per reply cost more than parsing it)."""
        p = self._protocol
        while len(p.replies) < count:
            if p.closed is not None:
                raise p.closed
            loop = asyncio.get_running_loop()
            p.waiter = loop.create_future()
            p.wanted = count
            if p.waiting_since is None:
                p.waiting_since = loop.time()
            try:
                await p.waiter
            finally:
                p.waiter = None
        replies = p.replies
        return [replies.popleft() for _ in range(count)]

    async def _reply(self) -> Reply:
        """The next reply."""
        return (await self._replies(1))[0]

    def _watchdog(self) -> None:
        """Fail the session when the server has said nothing for the send timeout."""
        p, timeout = self._protocol, self._timeout
        if timeout is None or p.closed is not None:
            return
        loop = asyncio.get_running_loop()
        if p.waiting_since is not None and loop.time() - p.waiting_since >= timeout:
            p._fail(PipelineBroken("the server stopped answering"))
            return
        self._watch = loop.call_later(min(timeout, 0.5), self._watchdog)

    def _write(self, data: bytes) -> None:
        if not self.is_connected:
            raise PipelineBroken("the connection is closed")
        self._transport.write(data)

    @staticmethod
    def _envelope(sender: str, recipients: list[str]) -> bytes:
        lines = [f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in recipients] + ["DATA"]
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    async def send_all(
        self, messages: list[tuple[str, list[str], bytes]], *, crlf_only: bool = False
    ) -> list[TransactionResult | PipelineBroken]:
        """Send ``(sender, recipients, raw)`` transactions; one result per message, in order.
        ``crlf_only``: every ``raw`` is known to be CRLF only (see :func:`dot_stuff`).

        When the connection breaks, the message whose replies were awaited gets the
        :class:`PipelineBroken` (it may have arrived); every later one gets :class:`NotSent`
        (it cannot have arrived).
        """
        results: list[TransactionResult | PipelineBroken] = []
        if not messages:
            return results
        self._watchdog()
        try:
            self._write(self._envelope(messages[0][0], messages[0][1]))
            for index, (_sender, recipients, raw) in enumerate(messages):
                # MAIL, one per RCPT and DATA were sent in one write: their replies together
                envelope = await self._replies(len(recipients) + 2)
                mail, data = envelope[0], envelope[-1]
                rcpts = dict(zip(recipients, envelope[1:-1], strict=True))
                following = messages[index + 1] if index + 1 < len(messages) else None
                nxt = self._envelope(following[0], following[1]) if following else b""
                if data.code != 354:
                    self._write(b"RSET\r\n" + nxt)
                    await self._reply()  # RSET
                    results.append(TransactionResult(mail, rcpts, data, None))
                    continue
                if mail.code >= 400 or not _any_accepted(rcpts):
                    # RFC 2920: DATA was accepted although nothing can be delivered; end it
                    # empty and reset, so no message without valid envelope is sent
                    self._write(b".\r\nRSET\r\n" + nxt)
                    await self._reply()
                    await self._reply()
                    results.append(TransactionResult(mail, rcpts, data, None))
                    continue
                self._write(dot_stuff(raw, crlf_only=crlf_only) + nxt)
                final = await self._reply()
                results.append(TransactionResult(mail, rcpts, data, final))
        except PipelineBroken as exc:
            # replies may now be out of step with commands: this session is finished
            self.close()
            # the transaction being answered is the one that failed (it may even have
            # arrived): a delivery attempt; those after it never started
            results.append(exc)
            results += [NotSent()] * (len(messages) - len(results))
        finally:
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            self._protocol.waiting_since = None
        return results

    async def quit(self) -> None:
        try:
            self._write(b"QUIT\r\n")
            await asyncio.wait_for(self._reply(), 2)
        except (PipelineBroken, TimeoutError):
            pass
        self.close()

    def close(self) -> None:
        self._transport.close()
