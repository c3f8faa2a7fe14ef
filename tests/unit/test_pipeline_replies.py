"""The pipelined SMTP session: reply parsing, whatever way the bytes are cut, and the
batch driver that writes each transaction's next bytes as its replies come in."""

from __future__ import annotations

import asyncio
import time

import pytest

from postroom.smtp.pipeline import (
    NotSent,
    PipelineBroken,
    PipelinedSession,
    Reply,
    TransactionResult,
    _Protocol,
    dot_stuff,
)

STREAM = b"250 2.1.0 Ok\r\n250-first\r\n250-second\r\n250 last\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
EXPECTED = [
    Reply(250, "2.1.0 Ok"),
    Reply(250, "first\nsecond\nlast"),
    Reply(354, "End data with <CR><LF>.<CR><LF>"),
]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 13, len(STREAM)])
def test_replies_are_the_same_however_the_stream_is_cut(size: int) -> None:
    p = _Protocol()
    for k in range(0, len(STREAM), size):
        p.data_received(STREAM[k : k + size])
    assert list(p.replies) == EXPECTED and p.closed is None and p.buffer == b""


def test_a_malformed_reply_breaks_the_session_and_later_bytes_are_ignored() -> None:
    p = _Protocol()
    p.data_received(b"250 ok\r\nhello there\r\n")
    assert list(p.replies) == [Reply(250, "ok")]
    assert isinstance(p.closed, PipelineBroken) and "malformed" in str(p.closed)
    p.data_received(b"250 late\r\n")
    assert len(p.replies) == 1


@pytest.mark.parametrize("stream", [b"250 " + b"x" * 5000, b"250 " + b"x" * 5000 + b"\r\n"])
def test_an_endless_line_breaks_the_session(stream: bytes) -> None:
    p = _Protocol()
    p.data_received(stream)
    assert isinstance(p.closed, PipelineBroken) and "too long" in str(p.closed)


@pytest.mark.parametrize(
    ("raw", "wire"),
    [
        (b"a\r\n.b\r\n", b"a\r\n..b\r\n.\r\n"),
        (b".start", b"..start\r\n.\r\n"),
        (b"bare\nlf\rcr\r\n.\n", b"bare\r\nlf\r\ncr\r\n..\r\n.\r\n"),
        (b"", b"\r\n.\r\n"),
    ],
)
def test_dot_stuffing(raw: bytes, wire: bytes) -> None:
    assert dot_stuff(raw) == wire


@pytest.mark.parametrize(
    "raw",
    [b"a\r\n.b\r\n", b".start", b"", b"x", b".\r\n", b"\r\n.\r\n", b"..\r\n...\r\nend"],
)
def test_vouched_crlf_only_bytes_are_stuffed_exactly_as_checked_ones(raw: bytes) -> None:
    """The fast path for composed mail skips the check, never the stuffing."""
    assert dot_stuff(raw, crlf_only=True) == dot_stuff(raw)


# -- the batch driver: replies drive the writes ---------------------------------------------


class FakeTransport(asyncio.Transport):
    """Records what the session writes; the test plays the server."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False
        self.protocol: asyncio.BaseProtocol | None = None

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


def session(timeout: float | None = 5) -> tuple[PipelinedSession, FakeTransport, _Protocol]:
    t = FakeTransport()
    s = PipelinedSession(t, timeout=timeout)
    assert isinstance(t.protocol, _Protocol)
    return s, t, t.protocol


async def wait_for_writes(t: FakeTransport, count: int) -> None:
    for _ in range(100):
        if len(t.written) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"expected {count} writes, got {t.written}")


MESSAGES = [
    ("a@x.test", ["1@x.test"], b"one\r\n"),
    ("a@x.test", ["2@x.test", "3@x.test"], b"two\r\n"),  # DATA refused
    ("a@x.test", ["4@x.test"], b"three\r\n"),  # its only recipient refused
    ("a@x.test", ["5@x.test"], b".four\r\n"),
]
# the server's replies after each write of the session
SERVER = [
    b"250 ok\r\n250 ok\r\n354 go\r\n",
    b"250 queued 1\r\n250 ok\r\n250 ok\r\n250 ok\r\n451 DATA later\r\n",
    b"250 reset\r\n250 ok\r\n550 no such user\r\n354 go\r\n",
    b"554 no valid recipients\r\n250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n",
    b"250 queued 4\r\n",
]
WRITES = [
    b"MAIL FROM:<a@x.test>\r\nRCPT TO:<1@x.test>\r\nDATA\r\n",
    b"one\r\n.\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<2@x.test>\r\nRCPT TO:<3@x.test>\r\nDATA\r\n",
    b"RSET\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<4@x.test>\r\nDATA\r\n",
    b".\r\nRSET\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<5@x.test>\r\nDATA\r\n",
    b"..four\r\n.\r\n",
]


@pytest.mark.parametrize("cut", [1, 5, 1000])
async def test_each_transaction_is_answered_by_the_next_write(cut: int) -> None:
    """Body after 354 only; a refused DATA is reset; DATA accepted with no valid
    recipient ends empty and is reset; the next envelope rides with each body."""
    s, t, p = session()
    run = asyncio.create_task(s.send_all(MESSAGES))
    for k, answer in enumerate(SERVER):
        await wait_for_writes(t, k + 1)
        for i in range(0, len(answer), cut):
            p.data_received(answer[i : i + cut])
    results = await asyncio.wait_for(run, 5)
    assert t.written == WRITES
    one, two, three, four = results
    assert (
        isinstance(one, TransactionResult) and one.accepted and one.final == Reply(250, "queued 1")
    )
    assert isinstance(two, TransactionResult) and not two.accepted
    assert two.data == Reply(451, "DATA later") and two.final is None
    assert isinstance(three, TransactionResult) and not three.accepted
    assert three.rcpts == {"4@x.test": Reply(550, "no such user")} and three.final is None
    assert isinstance(four, TransactionResult) and four.final == Reply(250, "queued 4")
    assert s.is_connected and not p.replies  # in step, ready for the next batch


async def test_a_connection_lost_mid_batch_fails_the_message_answered_and_spares_the_rest() -> None:
    s, t, p = session()
    run = asyncio.create_task(s.send_all(MESSAGES))
    await wait_for_writes(t, 1)
    p.data_received(SERVER[0])
    await wait_for_writes(t, 2)
    p.data_received(b"250 queued 1\r\n250 ok\r\n")  # then the line goes dead
    p.connection_lost(ConnectionResetError("reset by peer"))
    results = await asyncio.wait_for(run, 5)
    assert isinstance(results[0], TransactionResult) and results[0].accepted
    assert type(results[1]) is PipelineBroken and "reset by peer" in str(results[1])
    assert [type(r) for r in results[2:]] == [NotSent, NotSent]
    assert t.closing and not s.is_connected


async def test_a_closed_session_sends_nothing() -> None:
    s, t, p = session()
    t.closing = True
    results = await s.send_all(MESSAGES[:2])
    assert [type(r) for r in results] == [PipelineBroken, NotSent] and t.written == []


async def test_a_silent_server_fails_the_batch_after_the_send_timeout() -> None:
    s, t, p = session(timeout=0.3)
    started = time.monotonic()
    run = asyncio.create_task(s.send_all(MESSAGES[:1]))
    await asyncio.sleep(0.2)
    p.data_received(b"250 ok\r\n")  # a partial answer: the timeout starts again
    results = await asyncio.wait_for(run, 5)
    waited = time.monotonic() - started
    assert type(results[0]) is PipelineBroken and "stopped answering" in str(results[0])
    assert 0.45 <= waited < 2, waited
    assert t.closing
