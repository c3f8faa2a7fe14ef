"""The sync against fake IMAP servers: hostile answers, dead listeners, refused logins."""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass, field, replace
from datetime import timedelta

from postroom import Postroom
from postroom.db.tables import utcnow
from postroom.inbound.schemas import InboundStatus, ListenerState
from tests.integration.fake_servers import ScriptedImap, TcpServer
from tests.integration.test_inbound_support import FAST, inbound, running, wait_until

#: The message announces a 9,999,999,999-byte literal; the server then says nothing more.
HUGE = b"* 1 FETCH (UID 1 RFC822.SIZE 120 BODY[HEADER.FIELDS (MESSAGE-ID)] {9999999999}\r\n"


@dataclass
class HostileImap(ScriptedImap):
    """Accepts any login and holds one message whose FETCH answer is a huge literal."""

    fetches: int = 0
    logins: int = 0

    def answer(self, tag: bytes, command: str) -> bytes:
        line = self.received[-1].upper()
        if command == "LOGIN":
            self.logins += 1
            return b"%s OK logged in\r\n" % tag
        if command == "SELECT":
            return (
                b"* 1 EXISTS\r\n* FLAGS (\\Seen)\r\n* OK [UIDVALIDITY 7] ok\r\n"
                b"* OK [UIDNEXT 2] ok\r\n%s OK [READ-WRITE] selected\r\n" % tag
            )
        if command == "NOOP":
            return b"%s OK noop\r\n" % tag
        if command == "UID" and b" SEARCH " in line:
            return b"* SEARCH 1\r\n%s OK searched\r\n" % tag
        if command == "UID" and b" FETCH " in line:
            self.fetches += 1
            return HUGE
        return super().answer(tag, command)


def fake_profile(app: Postroom, port: int, name: str = "Hostile") -> str:
    app.profiles.create(
        {
            "name": name,
            "smtp": {"host": "127.0.0.1", "port": 2525, "security": "none"},
            "sender": {"from_address": "ops@postroom.test"},
            "imap": {
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "auth": "basic",
                "username": "ops",
                "password": "pw",
                "use_idle": False,
                "connect_timeout_s": 3,
            },
        }
    )
    return name


async def test_a_huge_literal_cannot_exhaust_memory_and_shows_in_health(
    sqlite_app: Postroom,
) -> None:
    imap = HostileImap()
    with TcpServer(imap.serve) as server:
        name = fake_profile(sqlite_app, server.port)
        service = inbound(sqlite_app, replace(FAST, poll_interval_s=0.2))
        tracemalloc.start()
        try:
            async with running(service):
                health = await wait_until(
                    lambda: [h for h in service.health(name) if h.last_error], what="an error"
                )
                await wait_until(lambda: imap.logins >= 2, what="a reconnect")
                await wait_until(
                    lambda: service.health(name)[0].state is ListenerState.POLLING,
                    what="polling again",
                )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    h = health[0]
    assert "9999999999 bytes" in str(h.last_error) and h.last_error_code == "protocol_error"
    assert h.state in (ListenerState.BACKOFF, ListenerState.POLLING)
    assert peak < 16 * 1024 * 1024
    (row,) = service.list(profile=name)
    assert row.status is InboundStatus.REJECTED and "9999999999" in str(row.reject_reason)
    assert imap.fetches == 1  # recorded and moved past: never fetched again


async def test_a_refused_login_shows_as_error_with_the_servers_words(
    sqlite_app: Postroom,
) -> None:
    imap = ScriptedImap()  # refuses every login
    with TcpServer(imap.serve) as server:
        name = fake_profile(sqlite_app, server.port)
        service = inbound(sqlite_app)
        async with running(service):
            (h,) = await wait_until(
                lambda: [h for h in service.health(name) if h.state is ListenerState.ERROR],
                what="error state",
            )
    assert h.last_error_code == "auth_failed" and not h.stale


async def test_a_listener_that_died_shows_as_stale_error(sqlite_app: Postroom) -> None:
    imap = HostileImap()
    imap.replies["UID"] = b"* SEARCH\r\n{tag} OK nothing\r\n"  # an empty, quiet mailbox
    with TcpServer(imap.serve) as server:
        name = fake_profile(sqlite_app, server.port)
        service = inbound(sqlite_app, replace(FAST, poll_interval_s=0.2))
        async with running(service):
            await wait_until(lambda: service.health(name)[0].state is ListenerState.POLLING)
            # The process "dies" (no clean stop): what it last wrote stays behind.
            (alive,) = service.health(name)
            later = utcnow() + timedelta(seconds=2 * FAST.lease_s + 1)
            (dead,) = service.health(name, now=later)
    assert alive.state is ListenerState.POLLING and not alive.stale
    assert dead.state is ListenerState.ERROR and dead.stale
    assert dead.last_error_code == "listener_stale" and "stopped reporting" in str(dead.last_error)
    (stopped,) = service.health(name)
    assert stopped.state is ListenerState.STOPPED and not stopped.stale


@dataclass
class RefusingImap(HostileImap):
    """Two messages; the server refuses (NO) to hand out the first one's content."""

    body_fetches: list[bytes] = field(default_factory=list)

    def answer(self, tag: bytes, command: str) -> bytes:
        line = self.received[-1]
        if command == "UID" and b" SEARCH " in line.upper():
            return b"* SEARCH 1 2\r\n%s OK searched\r\n" % tag
        if command == "UID" and b" STORE " in line.upper():
            return b"%s OK stored\r\n" % tag
        if command == "UID" and b" FETCH " in line.upper():
            uids = [int(u) for u in line.split()[3].split(b",")]
            if b"RFC822.SIZE" in line.upper():
                return (
                    b"".join(
                        b"* %d FETCH (UID %d RFC822.SIZE %d)\r\n" % (u, u, len(GOOD)) for u in uids
                    )
                    + b"%s OK fetched\r\n" % tag
                )
            self.body_fetches.append(line.split()[3])
            if 1 in uids:
                return b"%s NO [SERVERBUG] Internal error reading the message\r\n" % tag
            return b"* 2 FETCH (UID 2 BODY[] {%d}\r\n%s)\r\n%s OK fetched\r\n" % (
                len(GOOD),
                GOOD,
                tag,
            )
        return super().answer(tag, command)


GOOD = b"From: a@postroom.test\r\nSubject: fine\r\nMessage-ID: <fine@x>\r\n\r\nhello\r\n"


async def test_a_message_the_server_keeps_refusing_is_rejected_after_three_tries(
    sqlite_app: Postroom,
) -> None:
    imap = RefusingImap()
    with TcpServer(imap.serve) as server:
        name = fake_profile(sqlite_app, server.port)
        service = inbound(sqlite_app, replace(FAST, poll_interval_s=0.2))
        async with running(service):
            await wait_until(
                lambda: service.list(profile=name, status="processed"), what="the second one"
            )
    rows = {r.uid: r for r in service.list(profile=name)}
    assert rows[1].status is InboundStatus.REJECTED
    assert "3 attempts in a row" in str(rows[1].reject_reason)
    assert "Internal error" in str(rows[1].reject_reason)
    assert rows[2].status is InboundStatus.PROCESSED
    assert imap.body_fetches == [b"1,2", b"1", b"1", b"1", b"2"]


@dataclass
class HugeFolderImap(HostileImap):
    """UIDNEXT 120001, one message left at UID 120000: searched in bounded windows."""

    searches: list[bytes] = field(default_factory=list)

    def answer(self, tag: bytes, command: str) -> bytes:
        line = self.received[-1]
        if command == "SELECT":
            return (
                b"* 1 EXISTS\r\n* OK [UIDVALIDITY 9] ok\r\n* OK [UIDNEXT 120001] ok\r\n"
                b"%s OK [READ-WRITE] selected\r\n" % tag
            )
        if command == "UID" and b" SEARCH " in line.upper():
            criteria = line.split()[-1]
            self.searches.append(criteria)
            # "n:*" always matches the highest UID, even when n is above it
            hit = criteria.endswith(b":*")
            return b"* SEARCH%s\r\n%s OK searched\r\n" % (b" 120000" if hit else b"", tag)
        if command == "UID" and b" FETCH " in line.upper():
            return b"%s NO [UNAVAILABLE] not now\r\n" % tag
        return super().answer(tag, command)


async def test_uid_search_uses_bounded_windows_and_ignores_the_star_match(
    sqlite_app: Postroom,
) -> None:
    imap = HugeFolderImap()
    with TcpServer(imap.serve) as server:
        name = fake_profile(sqlite_app, server.port)
        service = inbound(sqlite_app, replace(FAST, poll_interval_s=0.2))
        async with running(service):
            await wait_until(lambda: service.list(profile=name), timeout=15, what="a record")
            await wait_until(lambda: imap.searches.count(b"120001:*") >= 3, what="polling past it")
    assert imap.searches[:3] == [b"1:50000", b"50001:100000", b"100001:*"]
    # past UID 120000 now: "120001:*" still matches it (ignored), and no window is searched again
    after = imap.searches[imap.searches.index(b"120001:*") :]
    assert set(after) == {b"120001:*"}
    (row,) = service.list(profile=name)
    assert row.uid == 120000 and row.status is InboundStatus.REJECTED
