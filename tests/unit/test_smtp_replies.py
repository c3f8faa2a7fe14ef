"""Which AUTH replies mean "try another mechanism", and which mechanism goes first (pure)."""

from __future__ import annotations

import pytest

from postroom.smtp.auth import choose_mechanisms
from postroom.smtp.replies import mechanism_unusable, rcpt_refusal


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (504, "5.5.4 Unrecognized authentication type"),
        (534, "5.7.9 Authentication mechanism is too weak"),
        (504, ""),
        (535, "5.7.8 mechanism not supported"),  # RFC 4954: 535 is about the credentials
    ],
)
def test_mechanism_replies(code: int, text: str) -> None:
    assert mechanism_unusable(code, text) is (code != 535)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (535, "5.7.8 Error: authentication failed: authentication failure"),
        (535, "Incorrect authentication data"),
        (454, "4.7.0 Temporary authentication failure"),
        (530, "5.7.0 Must issue a STARTTLS command first"),
        (550, "5.7.1 mailbox locked"),
    ],
)
def test_credential_and_other_replies_are_not_a_mechanism_problem(code: int, text: str) -> None:
    assert not mechanism_unusable(code, text)


def test_a_permanent_reply_that_names_the_mechanism_as_unsupported() -> None:
    assert mechanism_unusable(500, "5.5.2 AUTH mechanism not supported")
    assert mechanism_unusable(502, "Unknown authentication type")


def test_plain_first_over_tls_cram_md5_first_in_plaintext() -> None:
    offered = ["CRAM-MD5", "PLAIN", "LOGIN", "XOAUTH2"]
    assert choose_mechanisms(offered, encrypted=True) == ["plain", "login", "cram-md5"]
    assert choose_mechanisms(offered, encrypted=False) == ["cram-md5", "plain", "login"]
    assert choose_mechanisms(["gssapi", "ntlm"], encrypted=True) == []


@pytest.mark.parametrize(
    ("code", "text", "signed_in", "expected"),
    [
        (
            553,
            "5.7.1 <bob@x.test>: Sender address rejected: not owned by user alice@x.test",
            True,
            "sender",
        ),
        (550, "5.1.7 The sender's mailbox is invalid", True, "sender"),
        (553, "5.1.8 <a@b>: Sender address rejected: Domain not found", False, "sender"),
        (550, "5.1.1 <bob@x.test>: Recipient address rejected: User unknown", True, "recipient"),
        (554, "5.7.1 <bob@example.com>: Relay access denied", False, "needs_login"),
        (554, "5.7.1 <bob@example.com>: Relay access denied", True, "recipient"),
        (
            554,
            "5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied",
            False,
            "needs_login",
        ),
        (550, "relay not permitted", False, "needs_login"),
        (550, "Authentication required", False, "needs_login"),
        (530, "5.7.0 Authentication required", False, "needs_login"),
        (550, "5.7.1 Recipient address rejected: sender policy", True, "recipient"),
        (554, "5.7.1 <a@b>: Recipient address rejected: Access denied", False, "needs_login"),
        (530, "5.7.57 Client not authenticated to send mail", False, "needs_login"),
        (550, "5.1.1 <a@b>: Recipient address rejected: User unknown", False, "recipient"),
    ],
)
def test_what_a_refused_rcpt_is_about(code: int, text: str, signed_in: bool, expected: str) -> None:
    assert rcpt_refusal(code, text, signed_in=signed_in) == expected


def test_envelope_declares_size_and_smtputf8_only_when_offered_and_needed() -> None:
    from postroom.smtp.esmtp import SIZE, SMTPUTF8
    from postroom.smtp.pipeline import _envelope

    raw = b"Subject: x\r\n\r\nbody\r\n"
    one = ("a@x.test", ["b@x.test"], raw)
    assert _envelope(one, 0) == b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"
    assert _envelope(one, SIZE | SMTPUTF8).startswith(b"MAIL FROM:<a@x.test> SIZE=20\r\n")
    two = ("a@x.test", ["用户@x.test", "c@x.test"], raw)
    assert (
        _envelope(two, SIZE | SMTPUTF8)
        == (
            "MAIL FROM:<a@x.test> SIZE=20 SMTPUTF8\r\nRCPT TO:<用户@x.test>\r\n"
            "RCPT TO:<c@x.test>\r\nDATA\r\n"
        ).encode()
    )
    assert b"SMTPUTF8" not in _envelope(two, SIZE)
    utf8_header = ("a@x.test", ["b@x.test"], "From: 用户@x.test\r\n\r\n".encode())
    assert _envelope(utf8_header, SMTPUTF8).endswith(b"SMTPUTF8\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")


def test_refused_before_sending() -> None:
    from postroom.smtp.esmtp import Offers, offers_from, refuse_before_sending

    assert offers_from({"size": "2097152", "smtputf8": ""}) == Offers(2097152, True)
    assert offers_from({"size": ""}) == Offers(0, False)  # SIZE without a limit
    raw = b"x" * 3000
    code, why = refuse_before_sending("a@x.test", ["b@x.test"], raw, Offers(2000, True)) or (0, "")
    assert code == 552 and "3,000 bytes" in why and "at most 2,000" in why
    assert refuse_before_sending("a@x.test", ["b@x.test"], raw, Offers(0, False)) is None
    code, why = refuse_before_sending("a@x.test", ["用户@x.test"], b"", Offers()) or (0, "")
    assert code == 553 and "SMTPUTF8" in why
