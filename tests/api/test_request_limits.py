"""Limits on what callers send (issue 16.4): request bodies, recipients, action bodies."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from postroom import Postroom
from postroom.settings import Settings
from tests.api.helpers import API, assert_error

MSG = {"to": ["bob@postroom.test"], "subject": "Run finished", "text": "green"}


def profile(app: Postroom) -> None:
    app.profiles.create(
        {"name": "QA alerts", "smtp": {"host": "127.0.0.1", "port": 1, "security": "none"},
         "sender": {"from_address": "qa@postroom.test"},
         "email_actions_base_url": "https://p.test"}
    )  # fmt: skip
    app.set_default("QA alerts")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Postroom, int, str]]:
    """The whole app under uvicorn on loopback, with a 64 KiB request cap; and a sender key."""
    import uvicorn

    from postroom.api import create_app

    pr = Postroom.open(settings=Settings(data_dir=tmp_path / "data", max_request_bytes=65536))
    profile(pr)
    key = pr.accounts.create_api_key("mailer", role="sender").key
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = uvicorn.Config(
        create_app(pr), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield pr, port, key
    finally:
        server.should_exit = True
        thread.join(10)
        pr.close()


def _exchange(port: int, head: bytes, chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send ``head`` then ``chunks`` until the server answers; returns the answer and how
    many body bytes had been sent by then."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        sock.settimeout(0.05)
        answer = b""
        deadline = time.monotonic() + 20
        for chunk in chunks:
            assert time.monotonic() < deadline, "no answer in time"
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                answer = b""
            if answer:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
        rest = answer.split(b"\r\n\r\n", 1)
        length = [int(h.split(b":")[1]) for h in rest[0].split(b"\r\n")
                  if h.lower().startswith(b"content-length:")]  # fmt: skip
        while length and len(rest[1]) < length[0]:
            more = sock.recv(65536)
            if not more:
                break
            rest[1] += more
        return rest[0] + b"\r\n\r\n" + rest[1], sent


def test_a_declared_oversized_body_is_refused_before_it_is_sent(
    live: tuple[Postroom, int, str],
) -> None:
    pr, port, key = live
    head = (
        f"POST {API}/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {48 * 2**20}\r\n\r\n"
    ).encode()
    answer, sent = _exchange(port, head, iter([b"x" * 65536] * 768))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"payload_too_large" in answer
    assert b"65,536 bytes" in answer and b"POSTROOM_MAX_REQUEST_BYTES" in answer
    assert sent < 4 * 2**20, sent  # answered long before 48 MB arrived
    assert pr.outbox.list() == []


def test_a_streamed_body_is_refused_once_it_passes_the_limit(
    live: tuple[Postroom, int, str],
) -> None:
    pr, port, key = live
    head = (
        f"POST {API}/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = b'{"messages": [' + b" " * 16000
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    answer, sent = _exchange(port, head, iter([chunk] * 3000))  # 48 MB if all were sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"payload_too_large" in answer and b"POSTROOM_MAX_REQUEST_BYTES" in answer
    assert sent < 4 * 2**20, sent
    assert pr.outbox.list() == []


def test_a_body_within_the_limit_is_served(live: tuple[Postroom, int, str]) -> None:
    import httpx

    pr, port, key = live
    r = httpx.post(f"http://127.0.0.1:{port}{API}/messages", json={**MSG, "text": "x" * 60000},
                   headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert r.status_code == 202, r.text


def test_too_many_recipients_in_a_message_is_422_naming_the_limit(
    app: Postroom, sender: TestClient
) -> None:
    profile(app)
    many = [f"r{i}@postroom.test" for i in range(100_000)]
    started = time.monotonic()
    r = sender.post(f"{API}/messages", json={**MSG, "to": many[:400], "bcc": many[400:]})
    error = assert_error(r, 422, "validation_error", "to")
    assert "100000 recipients" in error["message"] and "at most 500" in error["message"]
    assert "POSTROOM_MAX_RECIPIENTS_PER_MESSAGE" in error["message"]
    assert time.monotonic() - started < 10  # refused without parsing 100,000 addresses
    batch = {"messages": [MSG, {**MSG, "cc": many[:501]}]}
    assert_error(sender.post(f"{API}/messages", json=batch), 422, "validation_error", "1.to")
    ok = sender.post(f"{API}/messages", json={**MSG, "to": many[:500]})
    assert ok.status_code == 202, ok.text
    assert len(app.outbox.list()) == 1
    with pytest.raises(Exception, match="at most 500"):
        app.send({**MSG, "to": many[:501]})  # the Python API too


def test_actions_limit_recipients_and_body_sizes(app: Postroom, sender: TestClient) -> None:
    profile(app)
    base = {"process": "deploy", "subject": "Ship it?", "choices": ["approve", "reject"]}
    many = [f"r{i}@postroom.test" for i in range(100_000)]
    r = sender.post(
        f"{API}/actions",
        json={**base, "to": many, "text": "x" * (600 * 1024), "html": "<p>ok</p>",
              "context": {"blob": "y" * (600 * 1024)}},
    )  # fmt: skip
    error = assert_error(r, 422, "validation_error")
    fields = {e["field"]: e["message"] for e in error["errors"]}
    assert set(fields) == {"to", "text", "context"}, fields
    assert (
        "at most 100 per action" in fields["to"]
        and "POSTROOM_MAX_ACTION_RECIPIENTS" in fields["to"]
    )
    assert "POSTROOM_MAX_ACTION_BODY_BYTES" in fields["text"]
    assert app.outbox.list() == []
    ok = sender.post(f"{API}/actions", json={**base, "to": many[:100], "text": "x" * 1000})
    assert ok.status_code == 201, ok.text
    assert len(app.outbox.list(limit=1000)) == 100


def test_limits_are_settings(app_factory: object) -> None:
    from postroom.errors import ValidationError

    pr: Postroom = app_factory(  # type: ignore[operator]
        "sqlite", max_recipients_per_message=2, max_action_recipients=1,
        max_action_body_bytes=1024,
    )  # fmt: skip
    profile(pr)
    with pytest.raises(ValidationError, match="at most 2 per message"):
        pr.send({**MSG, "to": ["a@p.test", "b@p.test"], "cc": ["c@p.test"]})
    with pytest.raises(ValidationError, match="at most 1 per action"):
        pr.actions.create(process="p", to=["a@p.test", "b@p.test"], subject="s",
                          choices=["ok"], text="t")  # fmt: skip
    with pytest.raises(ValidationError, match="at most 1,024"):
        pr.actions.create(process="p", to=["a@p.test"], subject="s", choices=["ok"],
                          text="t" * 1025)  # fmt: skip
