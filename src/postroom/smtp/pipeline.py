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

from postroom.smtp.esmtp import SIZE, SMTPUTF8
from postroom.smtp.i18n import needs_smtputf8

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
        #: reply lines parsed so far (the watchdog's sign of life)
        self.received = 0
        #: the batch being sent, driven from here as its replies come in
        self.driver: _Driver | None = None

    def data_received(self, data: bytes) -> None:
        if self.closed is not None:
            return
        *lines, rest = (self.buffer + data if self.buffer else data).split(b"\n")
        if len(rest) > _MAX_LINE:
            self._fail(PipelineBroken("reply line too long"))
            return
        self.buffer = rest
        replies = self.replies
        for raw in lines:
            line = raw.rstrip(b"\r")
            if len(line) > _MAX_LINE:
                self._fail(PipelineBroken("reply line too long"))
                return
            if len(line) < 3 or not line[:3].isdigit():
                self._fail(PipelineBroken(f"malformed reply {line[:80]!r}"))
                return
            if line[3:4] == b"-":
                self._lines.append(line[4:].decode("utf-8", "replace"))
                continue
            text = line[4:].decode("utf-8", "replace")
            if self._lines:
                self._lines.append(text)
                text, self._lines = "\n".join(self._lines), []
            replies.append(Reply(int(line[:3]), text))
        if lines:
            self.received += len(lines)
            if self.driver is not None:
                self.driver.advance()
            elif self.waiter is not None and not self.waiter.done() and replies:
                self.waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self.closed = exc
        if self.driver is not None:
            self.driver.fail(exc)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(PipelineBroken(f"connection lost ({exc or 'closed by server'})"))

    def eof_received(self) -> bool | None:
        self._fail(PipelineBroken("the server closed the connection"))
        return None


def _envelope(message: tuple[str, list[str], bytes], params: int) -> bytes:
    """MAIL (with SIZE= and SMTPUTF8 as ``params`` allow), every RCPT, and DATA."""
    sender, recipients, raw = message
    if params & SIZE:
        # RFC 1870: the server refuses an oversized message here, before its bytes
        mail = f"MAIL FROM:<{sender}> SIZE={len(raw)}"
    else:
        mail = f"MAIL FROM:<{sender}>"
    if params & SMTPUTF8 and needs_smtputf8(sender, recipients, raw):
        mail += " SMTPUTF8"
    if len(recipients) == 1:  # most notifications
        return f"{mail}\r\nRCPT TO:<{recipients[0]}>\r\nDATA\r\n".encode()
    rcpts = "".join([f"RCPT TO:<{r}>\r\n" for r in recipients])
    return f"{mail}\r\n{rcpts}DATA\r\n".encode()


# what a transaction waits for
_ENVELOPE, _FINAL, _RESET = 0, 1, 2


class _Driver:
    """One :meth:`PipelinedSession.send_all` batch, driven by the server's replies: each
    time a transaction's replies are in, the next bytes are written from the protocol's
    callback. No task wakes up per message — only once, when the batch is done (a
    coroutine awaiting each transaction cost more than parsing its replies)."""

    __slots__ = (
        "broken", "crlf_only", "data", "done", "index", "mail", "messages", "need",
        "params", "protocol", "rcpts", "results", "stage", "transport", "watch",
    )  # fmt: skip

    def __init__(
        self,
        protocol: _Protocol,
        transport: asyncio.Transport,
        messages: list[tuple[str, list[str], bytes]],
        *,
        crlf_only: bool,
        done: asyncio.Future[None],
        params: int = 0,
    ) -> None:
        self.protocol, self.transport, self.messages = protocol, transport, messages
        self.crlf_only, self.done, self.params = crlf_only, done, params
        self.broken = False
        self.watch: asyncio.TimerHandle | None = None
        self.results: list[TransactionResult | PipelineBroken] = []
        self.index = 0
        self._expect_envelope()
        self.mail = self.data = Reply(0, "")
        self.rcpts: dict[str, Reply] = {}

    def _expect_envelope(self) -> None:
        """Wait for the current transaction's MAIL, RCPT and DATA replies (one write)."""
        self.stage, self.need = _ENVELOPE, len(self.messages[self.index][1]) + 2

    def _next_envelope(self) -> bytes:
        k = self.index + 1
        return _envelope(self.messages[k], self.params) if k < len(self.messages) else b""

    def advance(self) -> None:
        """Act on every transaction whose replies are all in."""
        replies = self.protocol.replies
        while not self.done.done() and len(replies) >= self.need:
            if self.stage == _ENVELOPE:
                recipients = self.messages[self.index][1]
                self.mail = replies.popleft()
                if len(recipients) == 1:  # most notifications: no comprehension's frame
                    self.rcpts = {recipients[0]: replies.popleft()}
                else:
                    self.rcpts = {r: replies.popleft() for r in recipients}
                self.data = replies.popleft()
                if self.data.code != 354:
                    self.transport.write(b"RSET\r\n" + self._next_envelope())
                    self.stage, self.need = _RESET, 1
                elif self.mail.code >= 400 or not _any_accepted(self.rcpts):
                    # RFC 2920: DATA was accepted although nothing can be delivered; end
                    # it empty and reset, so no message without valid envelope is sent
                    self.transport.write(b".\r\nRSET\r\n" + self._next_envelope())
                    self.stage, self.need = _RESET, 2
                else:
                    raw = self.messages[self.index][2]
                    self.transport.write(
                        dot_stuff(raw, crlf_only=self.crlf_only) + self._next_envelope()
                    )
                    self.stage, self.need = _FINAL, 1
                continue
            final: Reply | None = replies.popleft()
            if self.stage == _RESET:
                if self.need == 2:
                    replies.popleft()  # RSET's reply, after the empty message's
                final = None  # nothing was delivered
            self.results.append(TransactionResult(self.mail, self.rcpts, self.data, final))
            self.index += 1
            if self.index == len(self.messages):
                self.done.set_result(None)
                return
            self._expect_envelope()

    def fail(self, exc: BaseException) -> None:
        """The connection failed: the transaction being answered gets ``exc`` (it may even
        have arrived), every later one :class:`NotSent`."""
        if self.done.done():
            return
        self.broken = True
        self.results.append(exc if isinstance(exc, PipelineBroken) else PipelineBroken(str(exc)))
        self.results += [NotSent()] * (len(self.messages) - len(self.results))
        self.done.set_result(None)


class PipelinedSession:
    """Send many transactions over a set-up transport, pipelined."""

    def __init__(
        self, transport: asyncio.Transport, *, timeout: float | None, params: int = 0
    ) -> None:
        """``params``: ``esmtp.SIZE | esmtp.SMTPUTF8``, the MAIL FROM parameters the
        server offers (its EHLO): each message then declares its size, and one with a
        UTF-8 address or header asks for SMTPUTF8."""
        self._params = params
        self._protocol = _Protocol()
        transport.set_protocol(self._protocol)
        self._transport = transport
        self._timeout = timeout

    @property
    def is_connected(self) -> bool:
        return self._protocol.closed is None and not self._transport.is_closing()

    async def _reply(self) -> Reply:
        """The next reply (outside a batch)."""
        p = self._protocol
        while not p.replies:
            if p.closed is not None:
                raise p.closed
            p.waiter = asyncio.get_running_loop().create_future()
            try:
                await p.waiter
            finally:
                p.waiter = None
        return p.replies.popleft()

    def _watchdog(self, driver: _Driver, heard: int, since: float) -> None:
        """Fail the batch when the server has said nothing for the send timeout. One
        timer per batch, ticking at most every half second and looking at the count of
        reply lines (a timer per reply cost more than parsing it): a partial answer
        restarts the timeout."""
        p, timeout = self._protocol, self._timeout
        if timeout is None or driver.done.done():
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if p.received != heard:
            heard, since = p.received, now
        elif now - since >= timeout:
            p._fail(PipelineBroken("the server stopped answering"))
            return
        driver.watch = loop.call_later(min(timeout, 0.5), self._watchdog, driver, heard, since)

    async def send_all(
        self, messages: list[tuple[str, list[str], bytes]], *, crlf_only: bool = False
    ) -> list[TransactionResult | PipelineBroken]:
        """Send ``(sender, recipients, raw)`` transactions; one result per message, in order.
        ``crlf_only``: every ``raw`` is known to be CRLF only (see :func:`dot_stuff`).

        Each transaction's envelope (MAIL, every RCPT, DATA) goes in one write, and its
        body together with the next envelope. When the connection breaks, the message
        whose replies were awaited gets the :class:`PipelineBroken` (it may have
        arrived); every later one gets :class:`NotSent` (it cannot have arrived).
        """
        if not messages:
            return []
        p = self._protocol
        loop = asyncio.get_running_loop()
        driver = _Driver(
            p,
            self._transport,
            messages,
            crlf_only=crlf_only,
            done=loop.create_future(),
            params=self._params,
        )
        if not self.is_connected:
            driver.fail(p.closed or PipelineBroken("the connection is closed"))
            return driver.results
        p.driver = driver
        self._watchdog(driver, p.received, loop.time())
        try:
            self._transport.write(_envelope(messages[0], self._params))
            driver.advance()  # replies buffered before the batch (none, normally)
            await driver.done
        finally:
            p.driver = None
            if driver.watch is not None:
                driver.watch.cancel()
        if driver.broken:
            # replies may now be out of step with commands: this session is finished
            self.close()
        return driver.results

    async def quit(self) -> None:
        try:
            if self.is_connected:
                self._transport.write(b"QUIT\r\n")
                await asyncio.wait_for(self._reply(), 2)
        except (PipelineBroken, TimeoutError):
            pass
        self.close()

    def close(self) -> None:
        self._transport.close()
