"""What postroom composes, as a mailbox receives it: through the real Postfix + Dovecot.

Receiving filters distrust HTML without a text alternative, bare HTML fragments and
messages missing Date, Message-ID or MIME-Version (issue 17 item 9)."""

from __future__ import annotations

import asyncio
import uuid
from email.message import EmailMessage

import pytest

from postroom import Postroom
from postroom.outbox.worker import Worker
from tests.harness.mailservers import MailServers
from tests.integration.test_real_mail_servers import BOB, spec_data

pytestmark = pytest.mark.mailservers


def delivered(app: Postroom, servers: MailServers, subject: str) -> EmailMessage:
    asyncio.run(Worker(app, poll_s=0.05).run(drain=True))
    return servers.wait_for_mail(BOB, lambda m: m["Subject"] == subject)


def assert_trusted_headers(m: EmailMessage, message_id: str) -> None:
    assert m["From"].addresses[0].display_name == "QA alerts"
    assert m["From"].addresses[0].addr_spec == "alice@postroom.test"
    assert m["Message-ID"] == message_id
    assert m["MIME-Version"] == "1.0"
    assert m["Date"].datetime is not None and m["Date"].datetime.tzinfo is not None


def alternatives(m: EmailMessage) -> tuple[str, str]:
    """The text and the HTML of a multipart/alternative message, text first (RFC 2046:
    the last part is the preferred one)."""
    assert m.get_content_type() == "multipart/alternative"
    parts = list(m.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    return parts[0].get_content(), parts[1].get_content()  # type: ignore[attr-defined]


def test_html_only_goes_out_with_a_text_part_and_a_whole_document(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    sqlite_app.profiles.create(spec_data(mail_servers))
    subject = f"HTML only {uuid.uuid4().hex[:8]}"
    html = (
        "<h1>Build 412</h1><p>All <b>412</b> tests passed. "
        '<a href="https://ci.example/412">Open the run</a></p>'
        "<ul><li>unit</li><li>integration</li></ul>"
    )
    id = sqlite_app.send({"to": [BOB], "subject": subject, "html": html}, profile="QA alerts")
    m = delivered(sqlite_app, mail_servers, subject)
    assert_trusted_headers(m, sqlite_app.outbox.get(id).message_id)
    text, got_html = alternatives(m)
    assert text.replace("\r\n", "\n").rstrip("\n") == (
        "Build 412\n=========\n\nAll 412 tests passed. Open the run (https://ci.example/412)"
        "\n\n- unit\n- integration"
    )
    assert got_html.startswith('<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>')
    assert f"<body>{html}</body></html>" in got_html


def test_a_whole_document_and_a_given_text_are_kept_as_they_are(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    sqlite_app.profiles.create(spec_data(mail_servers))
    subject = f"Both {uuid.uuid4().hex[:8]}"
    html = "<!doctype html><HTML lang=en><body><p>Hi</p></body></HTML>"
    id = sqlite_app.send(
        {"to": [BOB], "subject": subject, "html": html, "text": "Hi (text)"}, profile="QA alerts"
    )
    m = delivered(sqlite_app, mail_servers, subject)
    assert_trusted_headers(m, sqlite_app.outbox.get(id).message_id)
    text, got_html = alternatives(m)
    assert text.strip() == "Hi (text)" and got_html.strip() == html


def test_an_actionable_email_in_html_has_both_parts(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    data = spec_data(mail_servers)
    data["email_actions_base_url"] = "http://127.0.0.1:8600"
    sqlite_app.profiles.create(data)
    sqlite_app.bindings.set_default("QA alerts")
    action = sqlite_app.actions.create(
        process="release", to=[BOB], subject=f"Deploy {uuid.uuid4().hex[:8]}?",
        html_body="<p>Deploy <b>v2.1</b> to production?</p>", choices=["approve", "reject"],
    )  # fmt: skip
    m = delivered(sqlite_app, mail_servers, f"{action.subject} [#{action.id}]")
    text, got_html = alternatives(m)
    assert text.startswith("Deploy v2.1 to production?\n")
    assert action.links["approve"] in text and "<b>" not in text
    assert got_html.startswith("<!DOCTYPE html>") and "<body><p>Deploy" in got_html
    assert m["Auto-Submitted"] == "auto-generated" and m["MIME-Version"] == "1.0"
    assert m["Date"] is not None and m["Message-ID"] is not None
