"""The IMAP sync against the real Postfix + Dovecot of the harness."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from postroom import Postroom
from postroom.imap.parse import Limits
from postroom.inbound.schemas import InboundEvent, InboundStatus, ListenerState
from postroom.outbox.worker import Worker
from tests.harness.mailservers import MailServers
from tests.integration.test_inbound_support import (
    FAST,
    append,
    imap_client,
    inbound,
    message,
    new_mailbox,
    receiving_profile,
    running,
    send_plain,
    wait_until,
)

pytestmark = pytest.mark.mailservers


async def test_new_mail_arrives_through_idle_within_seconds(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    name = receiving_profile(sqlite_app, mail_servers, user, pw)
    service = inbound(sqlite_app)
    events: list[InboundEvent] = []
    service.subscribe(name, events.append)
    async with running(service):
        await wait_until(lambda: service.health(name)[0].state is ListenerState.IDLE, what="IDLE")
        sent = time.monotonic()
        await asyncio.to_thread(send_plain, mail_servers, user, message(user, "Build 4711 failed"))
        await wait_until(lambda: events, timeout=5, what="the message")
        elapsed = time.monotonic() - sent
    assert elapsed < 3, elapsed
    event = events[0]
    assert event.subject == "Build 4711 failed" and event.profile == name
    assert event.text is not None and event.text.strip() == "hello"
    stored = service.list(profile=name)
    assert [m.status for m in stored] == [InboundStatus.PROCESSED]
    with imap_client(mail_servers, user, pw) as c:
        c.select_folder("INBOX")
        flags = c.get_flags(c.search("ALL"))
    assert all(b"\\Seen" in f for f in flags.values())
    health = service.health(name)[0]
    assert health.state is ListenerState.STOPPED and health.last_uid == event.uid


async def test_restart_mid_stream_repeats_and_skips_nothing(
    app_factory: Any, mail_servers: MailServers
) -> None:
    app: Postroom = app_factory("postgresql")
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    name = receiving_profile(app, mail_servers, user, pw)
    first = [message(user, f"Event {i:02d}") for i in range(15)]
    later = [message(user, f"Event {i:02d}") for i in range(15, 20)]
    await asyncio.to_thread(send_plain, mail_servers, user, *first)
    await wait_until(lambda: len(mail_servers.messages(user)) == 15, what="delivery")
    taken: list[str | None] = []

    def slow(event: InboundEvent) -> None:
        time.sleep(0.05)  # so that the stop lands mid-stream
        taken.append(event.message_id)

    service = inbound(app)
    service.subscribe(name, slow, name="counter")
    async with running(service):
        await wait_until(lambda: len(taken) >= 5, what="five messages")
    stopped_at = len(service.list(profile=name))
    assert 5 <= stopped_at < 15
    await asyncio.to_thread(send_plain, mail_servers, user, *later)

    restarted = inbound(app)  # as a new process would
    restarted.subscribe(name, slow, name="counter")

    def all_processed() -> bool:
        rows = restarted.list(profile=name)
        return len(rows) == 20 and all(r.status is InboundStatus.PROCESSED for r in rows)

    async with running(restarted):
        await wait_until(all_processed, timeout=20, what="all 20 processed")
    rows = restarted.list(profile=name)
    expected = sorted(str(m["Message-ID"]) for m in first + later)
    assert sorted(str(r.message_id) for r in rows) == expected
    assert sorted(str(t) for t in taken) == expected  # each subscriber call exactly once
    assert sorted(r.uid for r in rows) == list(range(1, 21))  # no gap, no duplicate
    assert restarted.health(name)[0].last_uid == 20


async def test_uidvalidity_change_resyncs_without_duplicates(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    with imap_client(mail_servers, user, pw) as c:
        c.create_folder("Feed")
    old = [message(user, f"Feed {i}").as_bytes() for i in range(3)]
    await asyncio.to_thread(append, mail_servers, user, pw, "Feed", *old)
    name = receiving_profile(sqlite_app, mail_servers, user, pw, folder="Feed")
    service = inbound(sqlite_app)
    calls: list[str | None] = []
    service.subscribe(name, lambda e: calls.append(e.message_id), name="calls")

    def processed(n: int) -> Callable[[], bool]:
        return lambda: (
            len(rows := service.list(profile=name)) == n
            and all(r.status is InboundStatus.PROCESSED for r in rows)
        )

    async with running(service):
        await wait_until(processed(3), what="the first three")
    before = service.health(name)[0].uidvalidity
    with imap_client(mail_servers, user, pw) as c:  # the folder is recreated: new UIDVALIDITY
        c.delete_folder("Feed")
        c.create_folder("Feed")
    new = message(user, "Feed 3").as_bytes()
    await asyncio.to_thread(append, mail_servers, user, pw, "Feed", *old, new)
    async with running(service):
        await wait_until(processed(4), what="the new message")
        await wait_until(lambda: service.health(name)[0].last_uid == 4, what="the resync")
    health = service.health(name)[0]
    assert health.uidvalidity != before
    assert len(calls) == 4 and len(set(calls)) == 4


def _nested_multiparts(depth: int) -> bytes:
    head = b"From: a@postroom.test\r\nSubject: bomb\r\nMIME-Version: 1.0\r\n"
    out = [head + b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n']
    for i in range(1, depth):
        out.append(f'--b{i - 1}\r\nContent-Type: multipart/mixed; boundary="b{i}"\r\n\r\n'.encode())
    out.append(f"--b{depth - 1}\r\nContent-Type: text/plain\r\n\r\nboom\r\n".encode())
    out.extend(f"--b{i}--\r\n".encode() for i in reversed(range(depth)))
    return b"".join(out)


def _many_parts(parts: int) -> bytes:
    head = b'From: a@postroom.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n'
    return head + b"--p\r\n\r\nx\r\n" * parts + b"--p--\r\n"


def _many_headers(headers: int) -> bytes:
    lines = b"".join(b"X-Filler-%d: v\r\n" % i for i in range(headers))
    return b"From: a@postroom.test\r\nSubject: headers\r\n" + lines + b"\r\nbody\r\n"


async def test_hostile_messages_are_rejected_with_reasons_and_the_next_is_processed(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    big = message(user, "Too big", text="x" * 3_000_000).as_bytes()
    good = message(user, "After the storm")
    hostile = [_nested_multiparts(1000), _many_parts(100_000), _many_headers(10_000), big]
    await asyncio.to_thread(append, mail_servers, user, pw, "INBOX", *hostile, good.as_bytes())
    name = receiving_profile(sqlite_app, mail_servers, user, pw)
    service = inbound(sqlite_app, replace(FAST, limits=Limits(max_bytes=2_500_000)))
    async with running(service):
        await wait_until(lambda: len(service.list(profile=name)) == 5, what="five records")
        await wait_until(
            lambda: service.list(profile=name, status="processed"), what="the good one"
        )
    rows = {r.uid: r for r in service.list(profile=name)}
    assert [rows[u].status for u in range(1, 6)] == [InboundStatus.REJECTED] * 4 + [
        InboundStatus.PROCESSED
    ]
    reasons = [str(rows[u].reject_reason) for u in range(1, 5)]
    assert "multipart levels" in reasons[0]
    assert "MIME parts" in reasons[1]
    assert "header fields" in reasons[2]
    assert "not downloaded" in reasons[3]
    assert rows[5].subject == "After the storm"
    with imap_client(mail_servers, user, pw) as c:  # rejected mail stays unread on the server
        c.select_folder("INBOX")
        flags = c.get_flags(list(range(1, 6)))
    assert [b"\\Seen" in flags[u] for u in range(1, 6)] == [False] * 4 + [True]


async def test_polling_without_idle_and_moving_processed_mail(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    with imap_client(mail_servers, user, pw) as c:
        c.create_folder("Done")
    name = receiving_profile(
        sqlite_app, mail_servers, user, pw, use_idle=False, processed="move:Done"
    )
    service = inbound(sqlite_app, replace(FAST, poll_interval_s=0.3))
    async with running(service):
        await wait_until(lambda: service.health(name)[0].state is ListenerState.POLLING)
        await asyncio.to_thread(
            append, mail_servers, user, pw, "INBOX", message(user, "Polled").as_bytes()
        )
        await wait_until(lambda: service.list(profile=name, status="processed"), what="polling")
    with imap_client(mail_servers, user, pw) as c:
        assert c.select_folder("INBOX")[b"EXISTS"] == 0
        assert c.select_folder("Done")[b"EXISTS"] == 1


async def test_delete_expunges_only_the_processed_message(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    # rejected (so never processed), and flagged \Deleted by a person: not ours to expunge
    await asyncio.to_thread(append, mail_servers, user, pw, "INBOX", _many_headers(1000))
    with imap_client(mail_servers, user, pw) as c:
        c.select_folder("INBOX")
        c.add_flags([1], [b"\\Deleted"])
    name = receiving_profile(sqlite_app, mail_servers, user, pw, processed="delete")
    service = inbound(sqlite_app)
    async with running(service):
        await wait_until(lambda: service.list(profile=name, status="rejected"))
        await asyncio.to_thread(
            append, mail_servers, user, pw, "INBOX", message(user, "Delete me").as_bytes()
        )
        await wait_until(lambda: service.list(profile=name, status="processed"))
    with imap_client(mail_servers, user, pw) as c:
        c.select_folder("INBOX")
        assert c.search("ALL") == [1]


async def test_a_dsn_for_a_sent_message_marks_it_bounced(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    name = receiving_profile(sqlite_app, mail_servers, user, pw)
    nobody = f"nobody-{uuid.uuid4().hex[:8]}@postroom.test"  # accepted, then refused by LMTP
    sent_id = sqlite_app.send(
        {"to": [nobody], "subject": "Nightly report", "text": "x"}, profile=name
    )
    await Worker(sqlite_app, poll_s=0.05).run(drain=True)
    assert sqlite_app.outbox.get(sent_id).status == "sent"
    service = inbound(sqlite_app)
    async with running(service):
        await wait_until(
            lambda: sqlite_app.outbox.get(sent_id).status == "bounced", timeout=20, what="DSN"
        )
    bounced = sqlite_app.outbox.get(sent_id)
    assert nobody in str(bounced.last_error) and "5.1.1" in str(bounced.last_error)
    assert bounced.last_code == 550
    (dsn,) = service.list(profile=name)
    assert dsn.bounce is not None and dsn.bounce.outbox_id == sent_id


async def test_a_dropped_connection_reconnects_and_misses_nothing(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    name = receiving_profile(sqlite_app, mail_servers, user, pw)
    service = inbound(sqlite_app)

    def kick() -> None:  # Dovecot says BYE to the user's sessions and closes them
        subprocess.run(
            ["doveadm", "-c", str(mail_servers.dovecot_config), "kick", user],
            env=mail_servers._env(),
            capture_output=True,
            timeout=10,
            check=True,
        )

    async with running(service):
        await wait_until(lambda: service.health(name)[0].state is ListenerState.IDLE)
        await asyncio.to_thread(kick)
        await asyncio.to_thread(send_plain, mail_servers, user, message(user, "While away"))
        await wait_until(lambda: service.list(profile=name, status="processed"), what="mail")
    (row,) = service.list(profile=name)
    assert row.subject == "While away"
    health = service.health(name)[0]
    assert health.last_error_code == "protocol_error", health.last_error
