"""Inbound storage on SQLite and PostgreSQL: leases, positions, dedupe, hostile text, bounces."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from postroom import Postroom
from postroom.db.tables import OutboxMessage
from postroom.imap.parse import InboundMessage as Parsed
from postroom.imap.parse import parse_inbound
from postroom.inbound.bounces import Bounce, RecipientStatus
from postroom.inbound.mailboxes import LeaseLost
from postroom.inbound.schemas import InboundStatus, ListenerState
from postroom.inbound.store import Location
from postroom.outbox.bounce_tokens import make_token
from postroom.outbox.queue import Claim, Delivery
from postroom.smtp.replies import Outcome
from tests.conftest import basic_profile
from tests.integration.test_inbound_support import inbound

HOSTILE = (
    b"From: a@postroom.test\r\nSubject: =?utf-8?q?nul=00here?=\r\nMessage-ID: <h@x>\r\n"
    b"X-Bad: caf\xe9\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbinary \x00 and \xff\xfe\r\n"
)


def receiving(app: Postroom) -> int:
    data = basic_profile("Support inbox")
    data["imap"] = {"host": "imap.example.com", "username": "s@example.com", "password": "pw"}
    return app.profiles.create(data).id


def test_one_lease_holder_and_takeover_after_expiry(app: Postroom) -> None:
    boxes = inbound(app).mailboxes
    mailbox = boxes.ensure(receiving(app), "INBOX")
    assert boxes.ensure(boxes.get(mailbox).profile_id, "INBOX") == mailbox  # type: ignore[union-attr]
    assert boxes.acquire(mailbox, "a", lease_s=0.5)
    assert not boxes.acquire(mailbox, "b", lease_s=0.5)
    assert boxes.renew(mailbox, "a", lease_s=0.5) and not boxes.renew(mailbox, "b", lease_s=0.5)
    time.sleep(0.6)
    assert boxes.acquire(mailbox, "b", lease_s=5)  # a stopped renewing
    with pytest.raises(LeaseLost):
        boxes.set_state(mailbox, "a", ListenerState.IDLE)
    with pytest.raises(LeaseLost):
        boxes.position(mailbox, "a", 7)
    boxes.release(mailbox, "a")  # not a's to give up: nothing happens
    assert boxes.get(mailbox).lease_owner == "b"  # type: ignore[union-attr]
    boxes.release(mailbox, "b")
    row = boxes.get(mailbox)
    assert row is not None and row.lease_owner is None and row.state == "stopped"


def test_uidvalidity_change_starts_over_and_stores_each_message_once(app: Postroom) -> None:
    service = inbound(app)
    profile_id = receiving(app)
    boxes, store = service.mailboxes, service.store
    mailbox = boxes.ensure(profile_id, "INBOX")
    assert boxes.acquire(mailbox, "me", lease_s=30)
    first = boxes.position(mailbox, "me", 100)
    assert (first.last_uid, first.resync) == (0, False)
    where = Location(mailbox, "me", profile_id, "Support inbox", "INBOX", 100)
    parsed = parse_inbound(HOSTILE)
    assert isinstance(parsed, Parsed)
    stored = store.store(where, 3, parsed, size=len(HOSTILE), sha256="a" * 64, bounce=None)
    assert stored is not None
    assert store.store(where, 3, parsed, size=len(HOSTILE), sha256="a" * 64, bounce=None) is None
    assert boxes.position(mailbox, "me", 100).last_uid == 3

    changed = boxes.position(mailbox, "me", 200)
    assert (changed.last_uid, changed.resync, changed.previous_uidvalidity) == (0, True, 100)
    found = store.duplicate(profile_id, message_id="<h@x>", size=len(HOSTILE))
    assert found == (stored, InboundStatus.RECEIVED)
    assert store.duplicate(profile_id, message_id=None, size=len(HOSTILE), sha256="a" * 64)
    assert store.duplicate(profile_id, message_id="<h@x>", size=1) is None
    store.relocate(Location(mailbox, "me", profile_id, "Support inbox", "INBOX", 200), 1, stored)
    event = service.get(stored)
    assert (event.uid, event.subject) == (1, "nul\ufffdhere")
    assert event.text is not None and "\x00" not in event.text
    assert all("\x00" not in v and "\udce9" not in v for _, v in event.headers)
    assert boxes.position(mailbox, "me", 200).last_uid == 1


def test_a_bounce_marks_only_a_sent_message(app: Postroom) -> None:
    service = inbound(app)
    profile_id = receiving(app)
    sent = app.send(
        {"to": ["bob@example.com"], "subject": "Report", "text": "x"}, profile="Support inbox"
    )
    queued = app.send(
        {"to": ["eve@example.com"], "subject": "Later", "text": "x"}, profile="Support inbox"
    )
    with app.sessions() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.id == sent).values(status="sent"))
        s.commit()
    mailbox = service.mailboxes.ensure(profile_id, "INBOX")
    service.mailboxes.acquire(mailbox, "me", lease_s=30)
    service.mailboxes.position(mailbox, "me", 1)
    where = Location(mailbox, "me", profile_id, "Support inbox", "INBOX", 1)
    dsn = parse_inbound(b"From: MAILER-DAEMON@x\r\nSubject: Undelivered\r\n\r\nx\r\n")
    assert isinstance(dsn, Parsed)
    failed = RecipientStatus("bob@example.com", "failed", "5.1.1", "550 5.1.1 no such user")
    sent_id = app.outbox.get(sent).message_id
    # a notice without the message's bounce token, and one with another message's token,
    # are stored as refused and change nothing (notices are only believed with a token)
    other = make_token(*app.hmac_keys.current(), app.outbox.get(queued).message_id)
    for uid, tokens in ((1, []), (2, [other])):
        service.store.store(where, uid, dsn, size=10 + uid, sha256=str(uid) * 64,
                            bounce=Bounce(sent_id, [failed], tokens=tokens))  # fmt: skip
    assert app.outbox.get(sent).status == "sent"
    for uid, outbox_id in ((3, sent), (4, queued)):
        message_id = app.outbox.get(outbox_id).message_id
        token = make_token(*app.hmac_keys.current(), message_id)
        bounce = Bounce(message_id, [failed], tokens=[token])
        store_id = service.store.store(
            where, uid, dsn, size=10 + uid, sha256=str(uid) * 64, bounce=bounce
        )
        assert store_id is not None
    bounced, untouched = app.outbox.get(sent), app.outbox.get(queued)
    assert bounced.status == "bounced" and bounced.last_code == 550
    assert bounced.last_error == "bob@example.com: 5.1.1 550 5.1.1 no such user"
    assert untouched.status == "queued"
    events = sorted((service.get(m.id) for m in service.list()), key=lambda e: e.uid)
    infos = [e.bounce for e in events if e.bounce]
    assert [(b.authenticated, b.outbox_id) for b in infos] == [
        (False, None),
        (False, None),
        (True, sent),
        (True, None),
    ]
    assert "no X-Postroom-Bounce token" in str(infos[0].refused)
    assert "does not match" in str(infos[1].refused)


def test_a_bounce_that_arrives_before_sent_is_recorded_applies_when_it_is(app: Postroom) -> None:
    """A DSN can beat the worker's ``sent`` write (the relay answers 250, bounces at once,
    and the listener stores the notice before the worker's batch commits): it is held and
    applied by the queue's complete path, in the same transaction as ``sent``."""
    service = inbound(app)
    profile_id = receiving(app)
    ids = [
        app.send({"to": [to], "subject": "Report", "text": "x"}, profile="Support inbox")
        for to in ("bob@example.com", "carol@example.com")
    ]
    in_flight = app.outbox.queue.claim("w1", limit=1, lease_s=60)  # sending now
    assert [c.id for c in in_flight] == ids[:1]
    mailbox = service.mailboxes.ensure(profile_id, "INBOX")
    service.mailboxes.acquire(mailbox, "me", lease_s=30)
    service.mailboxes.position(mailbox, "me", 1)
    where = Location(mailbox, "me", profile_id, "Support inbox", "INBOX", 1)
    dsn = parse_inbound(b"From: MAILER-DAEMON@x\r\nSubject: Undelivered\r\n\r\nx\r\n")
    assert isinstance(dsn, Parsed)
    stored = []
    for uid, outbox_id in enumerate(ids, start=1):  # one still sending, one still queued
        message_id = app.outbox.get(outbox_id).message_id
        failed = RecipientStatus(f"u{uid}@example.com", "failed", "5.1.1", "550 5.1.1 no such user")
        token = make_token(*app.hmac_keys.current(), message_id)
        stored.append(
            service.store.store(
                where, uid, dsn, size=10 + uid, sha256=str(uid) * 64,
                bounce=Bounce(message_id, [failed], tokens=[token]),
            )
        )  # fmt: skip
    assert [app.outbox.get(i).status for i in ids] == ["sending", "queued"]

    def sent(claims: list[Claim]) -> list[Delivery]:
        return [Delivery(c, Outcome.SENT, 250, "250 ok", "w1") for c in claims]

    assert app.outbox.queue.complete(sent(in_flight)) == []
    refused, later = app.outbox.queue.complete_and_claim([], "w1", limit=5, lease_s=60)
    assert [c.id for c in later] == ids[1:]
    app.outbox.queue.complete(sent(later))
    for n, (outbox_id, inbound_id) in enumerate(zip(ids, stored, strict=True), start=1):
        message = app.outbox.get(outbox_id)
        assert (message.status, message.last_code) == ("bounced", 550)
        assert message.last_error == f"u{n}@example.com: 5.1.1 550 5.1.1 no such user"
        assert inbound_id is not None
        info = service.get(inbound_id).bounce
        assert info is not None and info.authenticated and info.outbox_id == outbox_id
    # applied once: a later send of another message does not touch them again
    third = app.send(
        {"to": ["dan@example.com"], "subject": "R", "text": "x"}, profile="Support inbox"
    )
    app.outbox.queue.complete(sent(app.outbox.queue.claim("w1", limit=5, lease_s=60)))
    assert app.outbox.get(third).status == "sent"


def test_a_bounce_stored_while_sent_is_being_written_is_not_lost(app_factory) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL, read committed: the worker's ``sent`` write is not committed yet when
    the notice is checked. The check waits for it (the outbox row is locked) and then
    bounces the message; unlocked, each side missed the other and the notice was lost."""
    import threading

    app = app_factory("postgresql")
    service = inbound(app)
    profile_id = receiving(app)
    outbox_id = app.send(
        {"to": ["bob@example.com"], "subject": "Report", "text": "x"}, profile="Support inbox"
    )
    claims = app.outbox.queue.claim("w1", limit=1, lease_s=60)
    mailbox = service.mailboxes.ensure(profile_id, "INBOX")
    service.mailboxes.acquire(mailbox, "me", lease_s=30)
    service.mailboxes.position(mailbox, "me", 1)
    where = Location(mailbox, "me", profile_id, "Support inbox", "INBOX", 1)
    dsn = parse_inbound(b"From: MAILER-DAEMON@x\r\nSubject: Undelivered\r\n\r\nx\r\n")
    assert isinstance(dsn, Parsed)
    message_id = app.outbox.get(outbox_id).message_id
    failed = RecipientStatus("bob@example.com", "failed", "5.1.1", "550 5.1.1 no such user")
    bounce = Bounce(message_id, [failed], tokens=[make_token(*app.hmac_keys.current(), message_id)])
    stored: list[int | None] = []
    with app.sessions() as worker_tx:
        # the worker's complete path, written but not committed
        assert app.outbox.queue._complete(worker_tx, [
            Delivery(claims[0], Outcome.SENT, 250, "250 ok", "w1")
        ]) == []  # fmt: skip
        listener = threading.Thread(
            target=lambda: stored.append(
                service.store.store(where, 1, dsn, size=10, sha256="1" * 64, bounce=bounce)
            )
        )
        listener.start()
        listener.join(0.5)  # the notice's check waits for the worker's transaction
        worker_tx.commit()
    listener.join(10)
    assert not listener.is_alive() and stored and stored[0] is not None
    message = app.outbox.get(outbox_id)
    assert (message.status, message.last_code) == ("bounced", 550)
    info = service.get(stored[0]).bounce
    assert info is not None and info.outbox_id == outbox_id
