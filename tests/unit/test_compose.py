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


# -- output that cannot be bent (issue 15 item 6) ------------------------------------------

FILE_NAMES = [
    "report.pdf",
    "a.pdf\"; filename*=utf-8''evil.exe; x=\"",  # the injection: filename* wins in clients
    'quote " inside.txt',
    "semi; colon=1.txt",
    "100% sure 'quoted'.csv",
    "résumé – final.pdf",
    "日本語の報告書.xlsx",
    "x" * 255,
    "é" * 255,
    "🙂" * 255,
]


@pytest.mark.parametrize("name", FILE_NAMES, ids=range(len(FILE_NAMES)))
def test_attachment_file_names_read_back_exactly(name: str) -> None:
    raw = compose(
        OutgoingMessage(
            to=["bob@postroom.test"], text="x",
            attachments=[{"filename": name, "content": b"data"}],  # type: ignore[list-item]
        ),
        sender=SENDER,
    ).raw  # fmt: skip
    disposition = (
        b"Content-Disposition: " + raw.split(b"Content-Disposition: ")[1].split(b"\r\n\r\n")[0]
    )
    assert max(map(len, disposition.split(b"\r\n"))) <= 78
    m = email.message_from_bytes(raw, policy=policy.default)
    [att] = list(m.iter_attachments())  # type: ignore[attr-defined]
    assert att.get_filename() == name
    assert set(att["Content-Disposition"].params) == {"filename"}
    assert b"filename*=utf-8''evil" not in raw and b"filename*=evil" not in raw


def lines_of(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return head.split(b"\r\n")


LONG_NAME = "🙂" * 256


@pytest.mark.parametrize(
    "fields",
    [
        {"subject": "x" * 998},
        {"subject": "é" * 998},
        {"subject": "word " * 199},
        {"to": [f"{LONG_NAME} <a{i}@postroom.test>" for i in range(100)]},
        {"cc": ['"' + "N, " * 85 + '" <c@postroom.test>'], "reply_to": f"{LONG_NAME} <r@postroom.test>"},
        {"headers": {"X-Long": "word " * 2000, "X-Unicode": "ü " * 3000}},
    ],
    ids=["ascii subject", "unicode subject", "spaced subject", "100 long names", "cc and reply-to",
         "custom headers"],
)  # fmt: skip
def test_no_header_line_is_longer_than_998_octets(fields: dict[str, object]) -> None:
    message = OutgoingMessage(**{"to": ["bob@postroom.test"], "text": "x", **fields})  # type: ignore[arg-type]
    sender = SenderSettings(from_address="robot@postroom.test", from_name="🙂" * 200)
    raw = compose(message, sender=sender).raw
    assert max(map(len, lines_of(raw))) <= 998
    m = email.message_from_bytes(raw, policy=policy.default)
    # RFC 2047 6.2: the folding between adjacent encoded words is not part of the text;
    # email.header.decode_header follows it (the address parser adds a space there)
    assert decoded(raw, "From") == f"{'🙂' * 200} <robot@postroom.test>"
    assert m["Subject"] == message.subject
    for key in ("to", "cc"):
        given = [parse_mailbox(a) for a in getattr(message, key)]
        if given:
            got = [(a.display_name, a.addr_spec) for a in m[key].addresses]
            assert [(n.replace(" ", ""), a) for n, a in got] == [
                (n.replace(" ", ""), a) for n, a in given
            ]
    if message.reply_to:
        assert decoded(raw, "Reply-To") == message.reply_to
    for name, value in message.headers.items():
        assert m[name] == value


def decoded(raw: bytes, name: str) -> str:
    """The header's text by RFC 2047 (email.header), from the bytes as written."""
    from email.header import decode_header, make_header

    return str(make_header(decode_header(email.message_from_bytes(raw)[name])))


def test_a_custom_header_word_too_long_for_a_line_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="X-Token has 2000 characters without a space"):
        OutgoingMessage(to=["b@postroom.test"], text="x", headers={"X-Token": "t" * 2000})


@pytest.mark.parametrize(
    "content_type",
    ["text/plain; charset=utf-8", 'text/csv; charset="utf-8"; header=present',
     'application/pdf; name="a b.pdf"', "image/svg+xml", "application/vnd.ms-excel"],
)  # fmt: skip
def test_content_types_may_carry_parameters(content_type: str) -> None:
    raw = compose(
        OutgoingMessage(
            to=["bob@postroom.test"], text="x",
            attachments=[{"filename": "f", "content_type": content_type, "content": b"d"}],  # type: ignore[list-item]
        ),
        sender=SENDER,
    ).raw  # fmt: skip
    [att] = list(email.message_from_bytes(raw, policy=policy.default).iter_attachments())  # type: ignore[attr-defined]
    assert f"Content-Type: {content_type}\r\n".encode() in raw
    assert att.get_content_type() == content_type.split(";")[0]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain; charset", "text/plain;", "text/plain; a=1; a=2", "téxt/plain",
     "text/plain\r\nBcc: x@y.test", 'text/plain; x="unclosed', "multipart/mixed; boundary=b",
     "message/rfc822", "text/plain; " + "; ".join(f"p{i}=1" for i in range(9)),
     "text/plain; x=" + "y" * 200, "text", "text/plain, text/html"],
)  # fmt: skip
def test_bad_content_types_are_refused(content_type: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as refused:
        OutgoingMessage(
            to=["b@postroom.test"], text="x",
            attachments=[{"filename": "f", "content_type": content_type, "content": b"d"}],  # type: ignore[list-item]
        )  # fmt: skip
    assert refused.value.errors()[0]["loc"] == ("attachments", 0, "content_type")


# -- what receiving filters expect (issue 17 item 9) ---------------------------------------


@pytest.mark.parametrize(
    ("given", "document"),
    [
        ("<p>Hi</p>", '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body><p>Hi</p></body></html>'),
        ("<body><p>Hi</p></body>", '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body><p>Hi</p></body></html>'),
        ("<HTML><p>Hi</p></HTML>", "<HTML><p>Hi</p></HTML>"),
        ("<html\n lang=en><p>Hi</p></html>", "<html\n lang=en><p>Hi</p></html>"),
        ("<htmlx>", '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body><htmlx></body></html>'),
    ],
)  # fmt: skip
def test_an_html_fragment_becomes_a_document(given: str, document: str) -> None:
    from postroom.notify.compose import html_document

    assert html_document(given) == document


def test_html_alone_goes_out_as_alternatives_with_a_text_part() -> None:
    m = roundtrip(to=["bob@postroom.test"], subject="s", html="<p>Grüße, <b>Zoë</b></p>")
    assert m.get_content_type() == "multipart/alternative"
    text, html = m.iter_parts()
    assert text.get_content_type() == "text/plain" and text.get_content().strip() == "Grüße, Zoë"
    assert html.get_content().startswith("<!DOCTYPE html>")
    for name in ("Date", "Message-ID", "MIME-Version", "From"):
        assert m[name]


def test_the_text_of_a_huge_html_body_is_made_from_its_beginning() -> None:
    from postroom.notify.compose import MAX_HTML_FOR_TEXT, bodies

    html = "<p>" + "word " * (MAX_HTML_FOR_TEXT // 5) + "</p><p>never read</p>"
    text, _ = bodies(None, html)
    assert text is not None and "never read" not in text
    assert text.endswith("The rest of this message is in its HTML version.\n")
