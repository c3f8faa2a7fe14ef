"""An actionable email decided by a real reply: Postfix → Dovecot → IMAP sync → decision."""

from __future__ import annotations

import asyncio

import pytest

from postroom import Postroom
from postroom.outbox.worker import Worker
from tests.harness.mailservers import MailServers
from tests.integration.test_inbound_support import (
    inbound,
    message,
    new_mailbox,
    receiving_profile,
    running,
    send_plain,
    wait_until,
)

pytestmark = pytest.mark.mailservers


async def test_reply_with_a_choice_decides_the_request(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    app = sqlite_app
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    name = receiving_profile(app, mail_servers, user, pw)
    app.profiles.update(name, {"email_actions_base_url": "https://automation.example.com"})
    app.bind("release-pipeline", name)
    action = app.actions.create(process="release-pipeline", to=["bob@postroom.test"],
                                subject="Deploy 4.2?", text="Please decide.", choices=["approve", "reject"])  # fmt: skip
    await Worker(app, poll_s=0.05).run(drain=True)
    request = await asyncio.to_thread(
        mail_servers.wait_for_mail, "bob@postroom.test", lambda m: action.id in str(m["Subject"])
    )
    service = inbound(app)
    service.subscribe(None, app._decide_by_reply, name="actions")
    async with running(service):
        forged = message(
            user, f"Re: {request['Subject']}", "approve", In_Reply_To=str(request["Message-ID"])
        )
        forged.replace_header("From", "mallory@postroom.test")
        reply = message(user, f"Re: {request['Subject']}", "Approve — go ahead.\n\n> Please decide.",
                        In_Reply_To=str(request["Message-ID"]))  # fmt: skip
        reply.replace_header("From", "Bob <bob@postroom.test>")
        await asyncio.to_thread(send_plain, mail_servers, user, forged)
        await wait_until(lambda: len(service.list(profile=name)) >= 1, what="the forged reply")
        assert app.actions.get(action.id).status == "pending"  # not from an addressed recipient
        await asyncio.to_thread(send_plain, mail_servers, user, reply)
        got = await wait_until(
            lambda: (a := app.actions.get(action.id)).status == "decided" and a, what="the decision"
        )
    assert (got.decision, got.decided_by, got.decided_via) == (
        "approve",
        "bob@postroom.test",
        "reply",
    )
