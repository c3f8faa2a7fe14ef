"""Composition (pure): what the email package reads back from postroom's bytes."""

from __future__ import annotations

import email
import re
from email import policy

import pytest

from postroom.notify.compose import OutgoingMessage, compose, parse_mailbox
from postroom.profiles.schemas import SenderSettings

SENDER = SenderSettings(from_address="robot@postroom.test", from_name='Robot, the "QA" bot')


def roundtrip(**fields: object) -> email.message.EmailMessage:
    raw = compose(OutgoingMessage(**fields), sender=SENDER).raw  # type: ignore[arg-type]
    assert not re.search(rb"(?<!\r)\n|\r(?!\n)", raw), "bare CR or LF"
    assert raw.isascii()
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def test_plain_ascii_message() -> None:
    m = roundtrip(to=["bob@postroom.test"], subject="Run finished", text="All green.\n")
    assert m["From"].addresses[0].display_name == 'Robot, the "QA" bot'
    assert m["Subject"] == "Run finished" and m.get_content_type() == "text/plain"
    assert m.get_content() == "All green.\r\n" or m.get_content() == "All green.\n"


def test_text_and_html_become_alternatives_with_attachments() -> None:
    m = roundtrip(
        to=["Zoë <zoe@postroom.test>"], cc=["carol@postroom.test"], subject="Bericht über 日本",
        text="Grüße", html="<p>Grüße</p>",
        attachments=[{"filename": "résumé.pdf", "content_type": "application/pdf", "content": b"%PDF-1\x00\xff"}],
    )  # fmt: skip
    assert m.get_content_type() == "multipart/mixed"
    body = m.get_body(("html", "plain"))
    assert body is not None and "Grüße" in body.get_content()
    [att] = list(m.iter_attachments())
    assert att.get_filename() == "résumé.pdf" and att.get_content() == b"%PDF-1\x00\xff"
    assert m["Subject"] == "Bericht über 日本" and m["To"].addresses[0].display_name == "Zoë"
    assert m["Cc"].addresses[0].addr_spec == "carol@postroom.test"


def test_long_subject_is_folded_and_reads_back_whole() -> None:
    subject = "word " * 60
    m = roundtrip(to=["bob@postroom.test"], subject=subject.strip(), text="x")
    assert m["Subject"] == subject.strip()


def test_long_lines_use_quoted_printable() -> None:
    text = "y" * 2000
    m = roundtrip(to=["bob@postroom.test"], text=text)
    assert m["Content-Transfer-Encoding"] == "quoted-printable"
    assert m.get_content().rstrip("\r\n") == text


def test_message_id_domain_is_the_senders_and_bcc_stays_out() -> None:
    c = compose(
        OutgoingMessage(to=["a@postroom.test"], bcc=["secret@postroom.test"], text="x"),
        sender=SENDER,
    )
    assert c.message_id.endswith("@postroom.test>")
    assert b"secret@" not in c.raw and c.recipients == ["a@postroom.test", "secret@postroom.test"]


@pytest.mark.parametrize(
    "bad", ["alice@example.org)<bob@example.com>", "Eve (x) <e@x.test>", "<a@b.test", "a@b.test>"]
)
def test_mailbox_parsing_is_strict(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_mailbox(bad)


def test_messages_sharing_a_body_share_its_encoding_and_nothing_else() -> None:
    """The encoded body is computed once per distinct body; headers are per message."""
    from postroom.notify import mime

    mime._encoded_body.cache_clear()
    text = "Build 4711 finished.\nÜbersicht: 412 passed\n.\n" * 20
    one = compose(OutgoingMessage(to=["a@postroom.test"], subject="one", text=text), sender=SENDER)
    two = compose(OutgoingMessage(to=["b@postroom.test"], subject="two", text=text), sender=SENDER)
    assert mime._encoded_body.cache_info().hits == 1
    head_one, body_one = one.raw.split(b"\r\n\r\n", 1)
    head_two, body_two = two.raw.split(b"\r\n\r\n", 1)
    assert body_one == body_two and head_one != head_two and one.message_id != two.message_id
    for raw in (one.raw, two.raw):
        m = email.message_from_bytes(raw, policy=policy.default)
        assert m.get_content().replace("\r\n", "\n") == text


def test_a_large_body_is_encoded_each_time_and_not_kept() -> None:
    from postroom.notify import mime

    mime._encoded_body.cache_clear()
    text = "x" * (mime._CACHED_BODY_CHARS + 1)
    composed = compose(OutgoingMessage(to=["a@postroom.test"], text=text), sender=SENDER)
    assert mime._encoded_body.cache_info().currsize == 0
    assert (
        email.message_from_bytes(composed.raw, policy=policy.default).get_content().startswith("x")
    )


def test_a_bare_newline_that_got_through_is_refused_at_the_last_check() -> None:
    from postroom.notify import mime

    with pytest.raises(ValueError, match="bare CR or LF"):
        mime.render(["Subject: a\nb"], "text", None, [])


def test_date_and_from_headers_stay_right_while_reused() -> None:
    """The Date value is formatted once a second and each sender's From header once:
    every message still carries the current second and its own sender."""
    import time
    from email.utils import parsedate_to_datetime

    other = SenderSettings(from_address="zoe@postroom.test", from_name="Zoë Ops")
    seen = []
    for sender in (SENDER, other, SENDER):
        before = time.time()
        raw = compose(OutgoingMessage(to=["bob@postroom.test"], text="x"), sender=sender).raw
        m = email.message_from_bytes(raw, policy=policy.default)
        sent = parsedate_to_datetime(str(m["Date"]))
        assert str(m["Date"]).endswith("+0000")
        assert int(before) <= sent.timestamp() <= time.time()
        seen.append(m["From"].addresses[0])
    assert [(a.display_name, a.addr_spec) for a in seen] == [
        ('Robot, the "QA" bot', "robot@postroom.test"),
        ("Zoë Ops", "zoe@postroom.test"),
        ('Robot, the "QA" bot', "robot@postroom.test"),
    ]
