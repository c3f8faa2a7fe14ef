"""A process killed with SIGKILL while it enqueues: each message is whole or absent, and
none that send() acknowledged is lost (issue 15 item 10).

A forked child process queues messages in a loop and reports each id once ``send()``
returned; it is killed at a random moment, a bounded number of times, then the outbox
is checked: every row has its complete body, no body is orphaned, every acknowledged id
is there, and the database itself is consistent.
"""

from __future__ import annotations

import base64
import email
import hashlib
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from postroom import Postroom
from postroom.settings import Settings

# 3 MiB attachment: composing and storing it takes long enough to be killed in the middle
ATTACHMENT = hashlib.sha256(b"postroom").digest() * (3 * 2**20 // 32)

# bounded: each round forks a process (fast: it inherits the imports) and kills it
ROUNDS = {"large": 6, "small": 5}
SIZES = {"large": len(ATTACHMENT), "small": 0}


def _child(data_dir: Path, url: str | None, size: int, out: int) -> None:
    """The forked process: queue messages until killed, writing each id once send()
    returned (one small os.write each: whole lines, never half of one)."""
    app = Postroom.open(settings=Settings(data_dir=data_dir, database_url=url))
    attachments = []
    if size:
        attachments = [{"filename": "big.bin", "content_type": "application/octet-stream",
                        "content": base64.b64encode(ATTACHMENT).decode()}]  # fmt: skip
    os.write(out, b"ready\n")
    for i in range(100_000):
        id = app.send(
            {"to": ["bob@postroom.test"], "subject": f"m{i}", "text": f"body {i}",
             "attachments": attachments}, profile="sink",
        )  # fmt: skip
        os.write(out, f"{id}\n".encode())
    os._exit(0)


def _kill_while_enqueuing(
    data_dir: Path, url: str | None, size: int, rng: random.Random
) -> list[int]:
    """One round: fork the child, SIGKILL it at a random moment; the ids it acknowledged."""
    read_end, write_end = os.pipe()
    child = multiprocessing.get_context("fork").Process(
        target=_child, args=(data_dir, url, size, write_end), daemon=True
    )
    child.start()
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        try:
            first = pipe.readline()
            assert first == b"ready\n", f"the child did not start (exit code {child.exitcode})"
            time.sleep(rng.uniform(0.02, 0.8))
            os.kill(child.pid or 0, signal.SIGKILL)
            child.join(30)
            assert child.exitcode == -signal.SIGKILL, child.exitcode
            out = pipe.read()  # the rest, up to EOF (the child is gone)
        finally:
            if child.is_alive():
                child.kill()
                child.join(10)
    return [int(line) for line in out.split(b"\n") if line.strip().isdigit()]


def _check_outbox(app: Postroom, acknowledged: set[int], size: int) -> int:
    """Every message whole; none acknowledged missing; returns how many are stored."""
    with app.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT m.id, m.status, m.subject, b.raw FROM outbox_messages AS m"
                " LEFT JOIN outbox_bodies AS b ON b.outbox_id = m.id ORDER BY m.id"
            )
        ).all()
        orphans = conn.execute(
            text(
                "SELECT count(*) FROM outbox_bodies AS b WHERE NOT EXISTS"
                " (SELECT 1 FROM outbox_messages AS m WHERE m.id = b.outbox_id)"
            )
        ).scalar()
        if conn.dialect.name == "sqlite":
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
    assert orphans == 0
    stored = {r.id for r in rows}
    assert acknowledged <= stored, f"acknowledged but lost: {sorted(acknowledged - stored)}"
    for r in rows:
        assert r.status == "queued" and r.raw is not None, (r.id, r.status)
        parsed = email.message_from_bytes(bytes(r.raw))
        assert parsed["Subject"] == r.subject
        parts = [p for p in parsed.walk() if not p.is_multipart()]
        text_part = parts[0].get_payload(decode=True)
        assert (
            isinstance(text_part, bytes) and text_part.strip() == f"body {r.subject[1:]}".encode()
        )
        if size:
            (big,) = [p for p in parts if p.get_filename() == "big.bin"]
            assert big.get_payload(decode=True) == ATTACHMENT, f"message {r.id} is not whole"
    return len(rows)


@pytest.mark.parametrize("size", ["large", "small"])
def test_sigkill_while_enqueuing_leaves_messages_whole_or_absent(
    backend: str, size: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_schema_url") if backend == "postgresql" else None
    data_dir = tmp_path / "data"
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    app = Postroom.open(settings=Settings(data_dir=data_dir, database_url=url))
    try:
        app.profiles.create(
            {"name": "sink", "smtp": {"host": "127.0.0.1", "port": 1, "security": "none"},
             "sender": {"from_address": "robot@postroom.test"}}
        )  # fmt: skip
        acknowledged: set[int] = set()
        for _ in range(ROUNDS[size]):
            app.engine.dispose()  # no pooled connection crosses the fork
            acknowledged |= set(_kill_while_enqueuing(data_dir, url, SIZES[size], rng))
            stored = _check_outbox(app, acknowledged, SIZES[size])
        assert acknowledged, "no send() was acknowledged in any round: the test proved nothing"
        assert stored >= len(acknowledged)
    finally:
        if url:
            from tests.conftest import _truncate

            _truncate(app)
        app.close()
