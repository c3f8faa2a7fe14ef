"""Actionable emails decided by real replies: Postfix → Dovecot → IMAP sync → decision.

A reply decides only when it was sent to the reply address that recipient was given (a
plus-addressed token only their request mail carried) and arrived on the mailbox the
request was sent from; forged replies are refused and recorded with the reason.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
from email.message import EmailMessage

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
    wait_until,
)

pytestmark = pytest.mark.mailservers


def deliver(servers: MailServers, msg: EmailMessage, *, to: str) -> None:
    """Through Postfix's plain port to the envelope recipient ``to`` (whatever To says)."""
    with smtplib.SMTP(servers.host, servers.ports["plain"], timeout=10) as smtp:
        smtp.send_message(msg, from_addr="bob@postroom.test", to_addrs=[to])


def reply(
    to: str, request: EmailMessage, text: str, *, sender: str, **headers: str
) -> EmailMessage:
    msg = message(to, f"Re: {request['Subject']}", text, In_Reply_To=str(request["Message-ID"]),
                  **headers)  # fmt: skip
    msg.replace_header("From", sender)
    return msg


async def test_only_a_reply_to_the_recipients_reply_address_decides(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    app = sqlite_app
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    other, other_pw = await asyncio.to_thread(new_mailbox, mail_servers)
    name = receiving_profile(app, mail_servers, user, pw)
    receiving_profile(app, mail_servers, other, other_pw)  # another monitored mailbox
    app.profiles.update(name, {"email_actions_base_url": "https://automation.example.com"})
    app.bind("release-pipeline", name)
    action = app.actions.create(process="release-pipeline", to=["bob@postroom.test"],
                                subject="Deploy 4.2?", text="Please decide.", choices=["approve", "reject"])  # fmt: skip
    await Worker(app, poll_s=0.05).run(drain=True)
    request = await asyncio.to_thread(
        mail_servers.wait_for_mail, "bob@postroom.test", lambda m: action.id in str(m["Subject"])
    )
    reply_to = str(request["Reply-To"])
    other_name = f"Inbox {other.split('@')[0]}"

    service = inbound(app)
    service.subscribe(None, app._decide_by_reply, name="actions")
    handled: dict[str, list[int]] = {name: [], other_name: []}
    # runs after the reply subscriber (callbacks run in the order they were added)
    service.subscribe(None, lambda e: handled[e.profile].append(e.id), name="seen")
    bob = "Bob <bob@postroom.test>"
    async with running(service):
        forged = [
            # From and subject of the recipient, threaded, but to the plain mailbox address
            (reply(user, request, "approve", sender=bob), user),
            # the right reply address, but not from the recipient
            (reply(reply_to, request, "approve", sender="mallory@postroom.test"), reply_to),
            # the right address and sender, delivered to another monitored mailbox
            (reply(reply_to, request, "approve", sender=bob), other),
        ]
        for i, (msg, to) in enumerate(forged, 1):
            profile = other_name if to == other else name
            want = len(handled[profile]) + 1
            await asyncio.to_thread(deliver, mail_servers, msg, to=to)
            await wait_until(lambda p=profile, n=want: len(handled[p]) >= n,
                             timeout=20, what=f"forged reply {i}")  # fmt: skip
            assert app.actions.get(action.id).status == "pending", f"forged reply {i} decided"
            if i == 1:  # the request named the recipient's own reply address
                local, domain = user.split("@")
                pattern = rf"{re.escape(local)}\+act-[0-9a-f]{{32}}@{re.escape(domain)}"
                assert re.fullmatch(pattern, reply_to)
        genuine = reply(reply_to, request, "Approve — go ahead.\n\n> Please decide.", sender=bob,
                        Authentication_Results="mail.postroom.test; spf=pass "
                        "smtp.mailfrom=postroom.test; dkim=pass header.d=postroom.test; dmarc=pass")  # fmt: skip
        await asyncio.to_thread(deliver, mail_servers, genuine, to=reply_to)
        got = await wait_until(
            lambda: (a := app.actions.get(action.id)).status == "decided" and a,
            timeout=20,
            what="the decision",
        )
    assert (got.decision, got.decided_by, got.decided_via) == (
        "approve",
        "bob@postroom.test",
        "reply",
    )
    assert got.decided_auth == "mail.postroom.test: spf=pass dkim=pass dmarc=pass"
    outcomes = [(r.outcome, r.reason or "") for r in got.replies]
    assert [o for o, _ in outcomes] == ["refused", "refused", "refused", "decided"]
    assert "no reply token" in outcomes[0][1]
    assert "From is not bob@postroom.test" in outcomes[1][1]
    assert "arrived on the mailbox of profile" in outcomes[2][1]
    assert got.replies[0].authentication.startswith("none:")
