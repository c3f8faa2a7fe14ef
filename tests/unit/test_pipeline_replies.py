"""Reply parsing of the pipelined SMTP session, whatever way the bytes are cut."""

from __future__ import annotations

import pytest

from postroom.smtp.pipeline import PipelineBroken, Reply, _Protocol, dot_stuff

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
