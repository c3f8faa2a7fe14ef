"""Bounce recognition (pure)."""

from __future__ import annotations

from postroom.inbound.bounces import detect_bounce
from postroom.outbox.bounce_tokens import make_token, stamp, token_ok

DSN = (
    b"From: MAILER-DAEMON@mx.postroom.test (Mail Delivery System)\r\n"
    b"To: robot@postroom.test\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
    b"--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
    b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.postroom.test\r\n\r\n"
    b"Final-Recipient: rfc822; gone@postroom.test\r\n"
    b"Action: failed\r\nStatus: 5.1.1\r\n"
    b"Diagnostic-Code: smtp; 550 5.1.1 <gone@postroom.test>: Recipient address rejected\r\n\r\n"
    b"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    b"From: robot@postroom.test\r\nMessage-ID: <orig-123@postroom.test>\r\nSubject: Run finished\r\n\r\n"
    b"--B--\r\n"
)


def test_rfc3464_dsn_is_read_field_by_field() -> None:
    b = detect_bounce(DSN)
    assert b is not None and b.standard and b.permanent
    assert b.original_message_id == "<orig-123@postroom.test>"
    [r] = b.recipients
    assert (r.recipient, r.action, r.status) == ("gone@postroom.test", "failed", "5.1.1")
    assert r.diagnostic.startswith("550 5.1.1")


def test_delayed_notice_is_not_a_bounce() -> None:
    delayed = DSN.replace(b"Action: failed", b"Action: delayed").replace(
        b"Status: 5.1.1", b"Status: 4.4.1"
    )
    assert detect_bounce(delayed) is None


def test_non_standard_bounce_matched_by_quoted_message_id() -> None:
    raw = (
        b"From: postmaster@legacy.test\r\nSubject: Mail delivery failed: returning message to sender\r\n\r\n"
        b"This message was created automatically by mail delivery software.\r\n\r\n"
        b"  gone@legacy.test\r\n    mailbox unavailable\r\n\r\n"
        b"------ This is a copy of the message, including all the headers. ------\r\n"
        b"Message-ID: <orig-9@postroom.test>\r\nSubject: hi\r\n"
    )
    b = detect_bounce(raw)
    assert b is not None and not b.standard and b.original_message_id == "<orig-9@postroom.test>"


def test_ordinary_mail_is_not_a_bounce() -> None:
    assert detect_bounce(b"From: bob@postroom.test\r\nSubject: approve\r\n\r\napprove\r\n") is None


def test_a_notice_is_believed_only_with_the_token_of_the_message_it_reports() -> None:
    keys = {"k1": b"k" * 32, "k2": b"j" * 32}
    token = make_token("k2", keys["k2"], "<orig-123@postroom.test>")
    stamped = DSN.replace(b"From: robot@", f"X-Postroom-Bounce: {token}\r\nFrom: robot@".encode())
    b = detect_bounce(stamped)
    assert b is not None and b.tokens == [token]
    assert token_ok(token, "<orig-123@postroom.test>", keys)
    assert not token_ok(token, "<other@postroom.test>", keys)  # bound to its Message-ID
    assert not token_ok(token, "<orig-123@postroom.test>", {"k1": keys["k1"]})  # unknown key
    assert not token_ok("k2." + "A" * 43, "<orig-123@postroom.test>", keys)
    assert not token_ok("garbage", "<orig-123@postroom.test>", keys)
    # a token in the notice's own headers is not one it returns
    own = f"X-Postroom-Bounce: {token}\r\n".encode() + DSN
    assert detect_bounce(own).tokens == []  # type: ignore[union-attr]
    assert detect_bounce(DSN).tokens == []  # type: ignore[union-attr]


def test_stamped_messages_end_their_headers_with_the_token() -> None:
    raw = stamp(b"From: a@b.test\r\nSubject: x\r\n\r\nbody\r\n", "k1.abc")
    assert raw == b"From: a@b.test\r\nSubject: x\r\nX-Postroom-Bounce: k1.abc\r\n\r\nbody\r\n"
