"""Actionable emails: links that survive scanners, single use, expiry, replies, REST."""

from __future__ import annotations

import asyncio
import email
import re
import time
from datetime import UTC, datetime
from email import policy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from postroom import Postroom, ValidationError
from postroom.actions.service import ActionRead
from postroom.api import create_app
from postroom.inbound.schemas import InboundEvent
from postroom.outbox.worker import Worker
from tests.conftest import clear_default
from tests.integration.smtp_fakes import raw_sink


def setup(
    app: Postroom, port: int, *, base: str | None = "https://automation.example.com/orch"
) -> None:
    app.profiles.create(
        {
            "name": "Approvals",
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none"},
            "sender": {"from_address": "approvals@postroom.test"},
            **({"email_actions_base_url": base} if base else {}),
        }
    )
    app.bind("release-pipeline", "Approvals")


def create(app: Postroom, **over: Any) -> ActionRead:
    return app.actions.create(
        **{
            "process": "release-pipeline",
            "to": ["lead@postroom.test"],
            "subject": "Deploy release 4.2 to production?",
            "text": "Release 4.2 passed all checks.",
            "choices": ["approve", "reject"],
            **over,
        }
    )


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_links_use_the_profiles_base_url_never_the_host_header(app: Postroom) -> None:
    setup(app, 1)
    a = create(app)
    assert a.status == "pending" and set(a.links) == {"approve", "reject"}
    assert all(
        u.startswith("https://automation.example.com/orch/actions/") for u in a.links.values()
    )
    client = TestClient(create_app(app), base_url="http://evil.example")
    page = client.get(f"/actions/{token_of(a.links['approve'])}")
    assert "evil.example" not in page.text


def test_get_and_head_change_nothing_post_decides_once(app: Postroom) -> None:
    setup(app, 1)
    a = create(app)
    client = TestClient(create_app(app))
    url = f"/actions/{token_of(a.links['approve'])}"
    for _ in range(3):  # a mail scanner prefetching the link
        r = client.get(url)
        assert (
            r.status_code == 200
            and "Confirm" in r.text
            and r.headers["cache-control"] == "no-store"
        )
        assert client.head(url).status_code == 200
    assert app.actions.get(a.id).status == "pending"
    r = client.post(url)
    assert r.status_code == 200 and "recorded" in r.text
    got = app.actions.get(a.id)
    assert (got.status, got.decision, got.decided_by, got.decided_via) == (
        "decided",
        "approve",
        "lead@postroom.test",
        "link",
    )
    again = client.post(f"/actions/{token_of(a.links['reject'])}")
    assert (
        again.status_code == 409
        and "already decided" in again.text.lower()
        and "approve" in again.text
    )
    assert app.actions.get(a.id).decision == "approve"


def test_tampered_and_expired_tokens_are_refused(app: Postroom) -> None:
    setup(app, 1)
    a = create(app, expires_in_s=60)
    client = TestClient(create_app(app))
    token = token_of(a.links["approve"])
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.post(f"/actions/{tampered}").status_code == 404
    with app.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(
            text("UPDATE action_requests SET expires_at = :t"), {"t": "2000-01-01 00:00:00"}
        )
    assert client.get(f"/actions/{token}").status_code == 410
    assert client.post(f"/actions/{token}").status_code == 410
    assert app.actions.get(a.id).status == "expired"


def test_link_is_bound_to_its_recipient(app: Postroom) -> None:
    setup(app, 1)
    a = app.actions.create(process="release-pipeline", to=["a@postroom.test", "b@postroom.test"],
                           subject="Go?", text="?", choices=["yes", "no"])  # fmt: skip
    assert (
        a.links_by_recipient["a@postroom.test"]["yes"]
        != a.links_by_recipient["b@postroom.test"]["yes"]
    )
    check = app.actions.decide_by_link(token_of(a.links_by_recipient["b@postroom.test"]["no"]))
    assert check.ok and check.action and check.action.decided_by == "b@postroom.test"


def test_links_survive_key_rotation(app: Postroom) -> None:
    setup(app, 1)
    a = create(app)
    app.actions.rotate_key()
    app.rotate_keys()
    assert app.actions.check_link(token_of(a.links["reject"])).ok


def test_mail_carries_links_and_auto_headers(app: Postroom) -> None:
    with raw_sink() as sink:
        setup(app, sink.port)
        a = create(app)
        asyncio.run(Worker(app, poll_s=0.05).run(drain=True))
    msg = email.message_from_bytes(sink.data[0], policy=policy.default)
    assert msg["Auto-Submitted"] == "auto-generated" and msg["X-Auto-Response-Suppress"] == "All"
    assert f"[#{a.id}]" in msg["Subject"]
    body = msg.get_content()
    assert a.links["approve"] in body.replace("=\n", "") or a.links["approve"] in body


def reply_event(app: Postroom, **over: Any) -> InboundEvent:
    fields: dict[str, Any] = {
        "id": 1, "profile": "Approvals", "folder": "INBOX", "uid": 1,
        "received_at": datetime.now(UTC), "message_id": "<r@x>", "subject": "Re: x",
        "from_address": "lead@postroom.test", "to": [], "cc": [], "date": None,
        "in_reply_to": None, "references": [], "headers": [], "text": "approve",
        "html": None, "size": 100, "attachments": [],
    }  # fmt: skip
    return InboundEvent(**{**fields, **over})


def test_reply_decides_only_with_the_recipients_reply_token(app: Postroom) -> None:
    # behaviour changed on purpose: From and the subject's [#act_…] proved nothing, so a
    # reply now needs the token of the recipient's reply address (issue 16 item 2)
    with raw_sink() as sink:
        setup(app, sink.port)
        a = create(app)
        asyncio.run(Worker(app, poll_s=0.05).run(drain=True))
    request = email.message_from_bytes(sink.data[0], policy=policy.default)
    reply_to = str(request["Reply-To"])
    assert reply_to.startswith("approvals+act-") and reply_to.endswith("@postroom.test")
    mid = str(request["Message-ID"])
    forged = app.actions.decide_by_reply(
        reply_event(app, subject=f"Re: Deploy [#{a.id}]", in_reply_to=mid, to=["approvals@postroom.test"])
    )  # fmt: skip
    assert forged is not None and not forged.ok and forged.reason == "refused"
    mallory = app.actions.decide_by_reply(reply_event(app, from_address="m@x.test", to=[reply_to]))
    assert mallory is not None and not mallory.ok
    dmarc = app.actions.decide_by_reply(reply_event(app, to=[reply_to], headers=[
        ("Authentication-Results", "mx.postroom.test; dmarc=fail header.from=postroom.test"),
        ("Authentication-Results", "forged.example; dmarc=pass")]))  # fmt: skip
    assert dmarc is not None and not dmarc.ok
    wrong_word = app.actions.decide_by_reply(reply_event(app, to=[reply_to], text="maybe later"))
    assert wrong_word is not None and not wrong_word.ok
    assert app.actions.decide_by_reply(reply_event(app, subject="Hello", to=["x@y.test"])) is None
    check = app.actions.decide_by_reply(reply_event(
        app, from_address="Lead@Postroom.test", to=[reply_to.upper()],
        text="> quoted approve\nReject. Not before the freeze ends.",
    ))  # fmt: skip
    assert check is not None and check.ok
    got = app.actions.get(a.id)
    assert (got.decision, got.decided_via, got.decided_by) == (
        "reject",
        "reply",
        "lead@postroom.test",
    )
    reasons = [r.reason or "" for r in got.replies]
    assert [r.outcome for r in got.replies] == ["refused"] * 4 + ["decided"]
    assert "no reply token" in reasons[0] and "From is not" in reasons[1]
    assert "dmarc=fail" in reasons[2] and "first word" in reasons[3]
    late = app.actions.decide_by_reply(reply_event(app, to=[reply_to], text="approve"))
    assert late is not None and not late.ok
    assert app.actions.get(a.id).replies[-1].outcome == "late"


def test_bad_requests_are_refused_and_nothing_is_kept(app: Postroom) -> None:
    setup(app, 1, base=None)
    clear_default(app)  # so that an unbound process has no profile (issue 22 item 4)
    with pytest.raises(ValidationError) as exc:
        create(app)
    assert exc.value.field == "email_actions_base_url"
    for over, field in [({"choices": []}, "choices"), ({"choices": ["ok", "OK"]}, "choices"),
                        ({"choices": ["two words"]}, "choices"), ({"expires_in_s": 5}, "expires_in_s"),
                        ({"to": ["x)<y@z.test>"]}, "to"), ({"process": "unbound"}, "process")]:  # fmt: skip
        with pytest.raises(ValidationError) as exc:
            create(app, **over)
        assert exc.value.field == field
    with app.engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT count(*) FROM action_requests")).scalar() == 0


def test_rest_create_and_read(app: Postroom) -> None:
    setup(app, 1)
    key = app.accounts.create_api_key("wf", role="sender").key
    client = TestClient(create_app(app), headers={"Authorization": f"Bearer {key}"})
    r = client.post("/api/v1/actions", json={
        "process": "release-pipeline", "to": ["lead@postroom.test"], "subject": "Go?",
        "text": "?", "choices": ["approve", "reject"], "expires_in_s": 3600})  # fmt: skip
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "pending" and re.match(
        r"https://automation\.example\.com/orch/actions/", body["links"]["approve"]
    )
    TestClient(create_app(app)).post(f"/actions/{token_of(body['links']['approve'])}")
    assert client.get(f"/api/v1/actions/{body['id']}").json()["decision"] == "approve"
    assert client.post("/api/v1/actions", json={"process": "release-pipeline"}).status_code == 422


def test_callback_hears_the_decision(app: Postroom) -> None:
    setup(app, 1)
    heard: list[ActionRead] = []
    app.actions.subscribe(heard.append)
    a = create(app)
    app.actions.decide_by_link(token_of(a.links["approve"]))
    deadline = time.monotonic() + 2
    while not heard and time.monotonic() < deadline:
        time.sleep(0.01)
    assert heard and heard[0].decision == "approve"
