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
