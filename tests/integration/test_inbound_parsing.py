"""Parsing limits that cannot be side-stepped, enforced where a slow or huge message cannot
stop anything else: the bounded parse in its own process (time killed, memory capped)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from postroom import Postroom
from postroom.imap.parse import Limits, Rejected
from postroom.inbound.parsing import MessageParser, Parsed
from postroom.inbound.schemas import InboundStatus, ListenerState
from postroom.settings import Settings
from tests.harness.mailservers import MailServers
from tests.integration.smtp_fakes import free_port
from tests.integration.test_inbound_support import (
    append,
    inbound,
    message,
    new_mailbox,
    receiving_profile,
    running,
    wait_until,
)

EXE = str(Path(sys.executable).parent / "postroom")
HEAD = b"From: a@postroom.test\r\nSubject: %s\r\nMIME-Version: 1.0\r\n"


def rfc2231_parts(parts: int) -> bytes:
    """A multipart whose boundary is declared only as an RFC 2231 continuation."""
    head = HEAD % b"2231 parts" + b'Content-Type: multipart/mixed; boundary*0="p"\r\n\r\n'
    return head + b"--p\r\n\r\nx\r\n" * parts + b"--p--\r\n"


def rfc2231_nested(depth: int) -> bytes:
    """Nested multiparts whose boundaries are declared as RFC 2231 extended values."""
    out = [HEAD % b"2231 nested" + b"Content-Type: multipart/mixed; boundary*=''b0\r\n\r\n"]
    for i in range(1, depth):
        out.append(b"--b%d\r\nContent-Type: multipart/mixed; boundary*=''b%d\r\n\r\n" % (i - 1, i))
    out.append(b"--b%d\r\nContent-Type: text/plain\r\n\r\nboom\r\n" % (depth - 1))
    out.extend(b"--b%d--\r\n" % i for i in reversed(range(depth)))
    return b"".join(out)


def headers_in_a_part(fields: int) -> bytes:
    filler = b"".join(b"X-F-%d: v\r\n" % i for i in range(fields))
    return (
        HEAD % b"part headers"
        + b'Content-Type: multipart/mixed; boundary*0="h"\r\n\r\n--h\r\n'
        + filler
        + b"\r\nx\r\n--h--\r\n"
    )


def slow_recipients(count: int = 20_000) -> bytes:
    """Within every size limit, but the email package's address parser takes a minute on
    it (and holds the GIL for seconds at a time)."""
    return HEAD % b"many recipients" + b"To: " + b"a@b.example, " * count + b"\r\n\r\nx\r\n"


def hostile_from() -> bytes:
    return (
        b'From: "a' + b" " * 96 * 1024 + b'b" <x@evil.example>\r\nSubject: spaces\r\n\r\nbody\r\n'
    )


@pytest.mark.mailservers
async def test_rfc2231_boundaries_do_not_bypass_the_limits(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    hostile = [rfc2231_parts(100_000), rfc2231_nested(1000), headers_in_a_part(10_000)]
    good = message(user, "After the bombs").as_bytes()
    await asyncio.to_thread(append, mail_servers, user, pw, "INBOX", *hostile, good)
    name = receiving_profile(sqlite_app, mail_servers, user, pw)
    service = inbound(sqlite_app)
    started = time.monotonic()
    async with running(service):
        await wait_until(  # before: 35 s (and 160 MB) for the first message alone
            lambda: service.list(profile=name, status="processed"), timeout=30, what="the good one"
        )
    elapsed = time.monotonic() - started
    rows = {r.uid: r for r in service.list(profile=name)}
    assert [rows[u].status for u in (1, 2, 3, 4)] == [InboundStatus.REJECTED] * 3 + [
        InboundStatus.PROCESSED
    ]
    assert "more than 500 MIME parts" in str(rows[1].reject_reason)
    assert "deeper than 20 multipart levels" in str(rows[2].reject_reason)
    assert "10000 header fields in one part" in str(rows[3].reject_reason)
    assert service.health(name)[0].quarantined == 3
    assert elapsed < 30, elapsed  # the parse is stopped at the limit, not after 35 s


def test_the_parser_process_is_killed_at_the_time_limit_and_replaced() -> None:
    parser = MessageParser(Limits(max_seconds=1.0))
    try:
        parser.start()
        first = parser.pid
        started = time.monotonic()
        outcome = parser.parse_blocking(slow_recipients())
        took = time.monotonic() - started
        assert isinstance(outcome, Rejected), outcome
        assert "took longer than 1 s to parse" in outcome.reason
        assert took < 4, took  # limit + pipe margin, not the minute the parse would take
        assert parser.pid is None  # killed
        after = parser.parse_blocking(HEAD % b"next" + b"\r\nhello\r\n")
        assert isinstance(after, Parsed) and after.message.subject == "next"
        assert parser.pid not in (None, first)
    finally:
        parser.close()


def test_the_parser_process_memory_is_capped() -> None:
    parser = MessageParser(Limits(max_memory_bytes=64 * 1024 * 1024, max_seconds=30))
    try:
        lines = HEAD % b"lines" + b"\r\n" + b"a\n" * 4_000_000  # 8 MB: ~400 MB as lines
        outcome = parser.parse_blocking(lines)
        assert isinstance(outcome, Rejected), outcome
        assert "memory" in outcome.reason, outcome.reason
        after = parser.parse_blocking(HEAD % b"next" + b"\r\nhello\r\n")
        assert isinstance(after, Parsed) and after.message.subject == "next"
    finally:
        parser.close()


def test_a_stop_signal_to_the_group_does_not_quarantine_the_message_in_hand() -> None:
    """Ctrl+C or a service manager's SIGTERM to every process: the parse in hand finishes."""
    parser = MessageParser(Limits(max_seconds=60))
    try:
        parser.start()
        child = parser.pid
        assert child is not None
        timer = threading.Timer(
            0.3, lambda: [os.kill(child, s) for s in (signal.SIGINT, signal.SIGTERM)]
        )
        timer.start()
        outcome = parser.parse_blocking(slow_recipients(3000))  # ~1-2 s of parsing
        timer.join()
        assert isinstance(outcome, Parsed), outcome
        assert len(outcome.message.to) == 3000 and parser.pid == child
    finally:
        parser.close()


def test_the_parser_process_ends_with_its_parent_and_on_close() -> None:
    parser = MessageParser(Limits())
    parser.start()
    pid = parser.pid
    assert pid is not None
    parser.close()
    assert parser.pid is None
    with pytest.raises(ProcessLookupError):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            os.kill(pid, 0)  # raises once the child is gone (it was reaped by close)
            time.sleep(0.05)


@pytest.mark.mailservers
def test_serve_answers_healthz_within_a_second_while_hostile_mail_is_parsed(
    tmp_path: Path, mail_servers: MailServers
) -> None:
    data, port = tmp_path / "data", free_port()
    app = Postroom.open(settings=Settings(data_dir=data))
    user, pw = new_mailbox(mail_servers)
    name = receiving_profile(app, mail_servers, user, pw)
    env = {**os.environ, "POSTROOM_DATA_DIR": str(data)}
    proc = subprocess.Popen([EXE, "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:  # one request at a time, as a load balancer's health check does
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    client.get(f"http://127.0.0.1:{port}/healthz").raise_for_status()
                except httpx.HTTPError:
                    pass  # a timeout counts by its duration below
                latencies.append(time.monotonic() - started)
                time.sleep(0.05)

    service = inbound(app)
    try:
        deadline = time.monotonic() + 30
        while not [h for h in service.health(name) if h.state is ListenerState.IDLE]:
            assert time.monotonic() < deadline and proc.poll() is None, "serve did not listen"
            time.sleep(0.1)
        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        good = message(user, "After the hostile ones").as_bytes()
        append(mail_servers, user, pw, "INBOX", hostile_from(), slow_recipients(), good)
        deadline = time.monotonic() + 60
        while not [
            r
            for r in service.list(profile=name, status="processed")
            if r.subject.startswith("After")
        ]:
            assert time.monotonic() < deadline, service.list(profile=name)
            time.sleep(0.1)
        stop.set()
        prober.join(10)
        assert len(latencies) > 20
        assert max(latencies) < 1.0, sorted(latencies)[-5:]
        rows = {r.uid: r for r in service.list(profile=name)}
        assert rows[3].status is InboundStatus.PROCESSED
        assert rows[1].status in (InboundStatus.PROCESSED, InboundStatus.REJECTED)
        assert rows[2].status is InboundStatus.REJECTED
        assert "took longer than 5 s to parse" in str(rows[2].reject_reason)
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        app.close()
