"""The action page shows every reply, refused ones with the reason, and the sender check."""

from __future__ import annotations

import asyncio
import email
import re
import warnings
from email import policy

from postroom import Postroom
from postroom.api import create_app
from postroom.outbox.worker import Worker
from tests.integration.smtp_fakes import raw_sink
from tests.integration.test_actions import create, reply_event, setup

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient


def test_the_action_page_lists_refused_and_deciding_replies(sqlite_app: Postroom) -> None:
    app = sqlite_app
    app.accounts.create_admin("ada", "ada-password-123")
    with raw_sink() as sink:
        setup(app, sink.port)
        a = create(app)
        asyncio.run(Worker(app, poll_s=0.05).run(drain=True))
    reply_to = str(email.message_from_bytes(sink.data[0], policy=policy.default)["Reply-To"])
    app.actions.decide_by_reply(
        reply_event(app, from_address="<b>mallory</b>@x.test", subject=f"Re: [#{a.id}]")
    )
    app.actions.decide_by_reply(reply_event(app, to=[reply_to], headers=[
        ("Authentication-Results", "mx.postroom.test; spf=pass; dkim=pass; dmarc=pass")]))  # fmt: skip
    with TestClient(create_app(app), follow_redirects=False) as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
        assert token
        client.post("/login", data={"csrf_token": token.group(1), "username": "ada",
                                    "password": "ada-password-123"})  # fmt: skip
        page = client.get(f"/settings/email/actions/{a.id}").text
    assert "Decided: approve" in page and "Sender check" in page
    assert page.count("mx.postroom.test: spf=pass dkim=pass dmarc=pass") == 2  # decision + row
    assert "no reply token" in page and "refused" in page
    assert "&lt;b&gt;mallory&lt;/b&gt;@x.test" in page and "<b>mallory" not in page
    assert reply_to not in page  # the reply address is a secret of the recipient
