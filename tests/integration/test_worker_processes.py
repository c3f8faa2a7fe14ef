"""Real `postroom worker` processes killed, stopped and multiplied: nothing is lost."""

from __future__ import annotations

import email
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postroom import Postroom
from postroom.outbox.service import SendRequest
from postroom.settings import Settings
from tests.integration.smtp_fakes import RawSink, raw_sink

EXE = str(Path(sys.executable).parent / "postroom")


def wait_until(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Env:
    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        self.vars = {**os.environ, "POSTROOM_DATA_DIR": str(data_dir)}
        if database_url:
            self.vars["POSTROOM_DATABASE_URL"] = database_url
        self.settings = Settings(data_dir=data_dir, database_url=database_url)
        self.procs: list[subprocess.Popen[bytes]] = []

    def worker(self, *args: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            [EXE, "worker", *args], env=self.vars, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path / "data")
    yield e
    e.close()


def setup(app: Postroom, sink: RawSink, n: int = 1, **profile: Any) -> list[int]:
    app.profiles.create(
        {
            "name": "sink",
            "smtp": {"host": "127.0.0.1", "port": sink.port, "security": "none", "auth": "none",
                     "send_timeout_s": 30},
            "sender": {"from_address": "robot@postroom.test"},
            **profile,
        }
    )  # fmt: skip
    return app.send_many(
        [
            SendRequest(
                {"to": ["bob@postroom.test"], "subject": f"m{i}", "text": "x"}, profile="sink"
            )
            for i in range(n)
        ]
    )


def message_ids(raws: list[bytes]) -> list[str]:
    return [str(email.message_from_bytes(r)["Message-ID"]) for r in raws]


def test_killed_after_claiming_nothing_is_lost(env: Env) -> None:
    """Killed while holding the claim, before any mail went out (its server never greets)."""
    from tests.integration.smtp_fakes import silent_server

    with raw_sink() as sink, silent_server() as silent, Postroom.open(settings=env.settings) as app:
        [id] = setup(app, sink)
        app.profiles.update("sink", {"smtp": {"port": silent}})
        w = env.worker("--lease", "1")
        wait_until(lambda: app.outbox.get(id).status == "sending", what="claim")
        w.kill()
        w.wait()
        app.profiles.update("sink", {"smtp": {"port": sink.port}})
        env.worker("--drain").wait(60)
        m = app.outbox.get(id)
        assert m.status == "sent"
        assert message_ids(sink.accepted) == [m.message_id]


def test_killed_mid_data_delivers_once_after_takeover(env: Env) -> None:
    """The worker dies while the body is on its way: the server never saw the end of data."""
    with raw_sink(rcvbuf=65536) as sink, Postroom.open(settings=env.settings) as app:
        sink.body_gate.clear()
        app.profiles.create(
            {"name": "sink", "smtp": {"host": "127.0.0.1", "port": sink.port, "security": "none"},
             "sender": {"from_address": "robot@postroom.test"}}
        )  # fmt: skip
        big = "x" * 100 + "\n"  # 6 MB: far more than the socket buffers hold
        id = app.send(
            {"to": ["bob@postroom.test"], "subject": "big", "text": big * 60_000}, profile="sink"
        )
        w = env.worker("--lease", "1")
        assert sink.data_started.wait(20), "the worker never started DATA"
        time.sleep(0.5)  # it is blocked writing the body
        w.kill()
        w.wait()
        sink.body_gate.set()
        env.worker("--drain").wait(60)
        m = app.outbox.get(id)
        assert m.status == "sent"
        assert message_ids(sink.accepted) == [m.message_id]


def test_killed_after_250_before_commit_may_deliver_twice_with_same_message_id(env: Env) -> None:
    """The one at-least-once window: the server accepted, the worker died before recording it."""
    with raw_sink() as sink, Postroom.open(settings=env.settings) as app:
        first, second = setup(app, sink, 2, max_connections=1)
        sink.hold_from = 2  # the first DATA gets its 250, the second waits: no commit yet
        sink.gate.clear()
        w = env.worker("--lease", "1")
        wait_until(lambda: len(sink.accepted) >= 1 and len(sink.data) >= 2, what="first 250")
        w.kill()
        w.wait()
        assert app.outbox.get(first).status == "sending"  # not recorded as sent
        sink.gate.set()
        env.worker("--drain").wait(60)
        a, b = app.outbox.get(first), app.outbox.get(second)
        assert a.status == b.status == "sent"
        counts = Counter(message_ids(sink.accepted))
        assert counts[a.message_id] == 2 and counts[b.message_id] in (1, 2)
        assert set(counts) == {a.message_id, b.message_id}


def test_stopped_worker_past_its_lease_cannot_overwrite(env: Env) -> None:
    with raw_sink() as sink, Postroom.open(settings=env.settings) as app:
        sink.gate.clear()
        [id] = setup(app, sink)
        stale = env.worker("--lease", "1")
        assert sink.received.wait(20)
        os.kill(stale.pid, signal.SIGSTOP)
        time.sleep(1.5)  # the lease runs out while the worker is frozen
        sink.received.clear()
        sink.gate.set()
        env.worker("--drain").wait(60)
        assert app.outbox.get(id).status == "sent"
        os.kill(stale.pid, signal.SIGCONT)
        time.sleep(1.5)
        stale.send_signal(signal.SIGTERM)
        _, err = stale.communicate(timeout=20)
        m = app.outbox.get(id)
        assert m.status == "sent"
        assert len(m.history) == 1 and m.history[0].worker != ""  # only the new owner wrote
        assert b"lost the lease" in err


def test_sigterm_finishes_in_flight_and_exits(env: Env) -> None:
    with raw_sink() as sink, Postroom.open(settings=env.settings) as app:
        sink.gate.clear()
        [id] = setup(app, sink)
        w = env.worker()
        assert sink.received.wait(20)
        w.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        sink.gate.set()
        assert w.wait(20) == 0
        assert app.outbox.get(id).status == "sent"


def test_three_workers_on_postgresql_deliver_each_message_once(
    tmp_path: Path, pg_schema_url: str
) -> None:
    env = Env(tmp_path / "pg", pg_schema_url)
    try:
        with raw_sink() as sink, Postroom.open(settings=env.settings) as app:
            ids = setup(app, sink, 3000, max_connections=6)
            workers = [env.worker("--drain", "--batch", "100") for _ in range(3)]
            for w in workers:
                assert w.wait(300) == 0, w.stderr.read() if w.stderr else ""
            counts = Counter(message_ids(sink.accepted))
            assert len(counts) == 3000 and set(counts.values()) == {1}
            assert app.outbox.queue.counts() == {"sent": 3000}
            assert len(ids) == 3000
    finally:
        env.close()
        with Postroom.open(
            settings=Settings(data_dir=tmp_path / "pg", database_url=pg_schema_url)
        ) as app:
            from tests.conftest import _truncate

            _truncate(app)


def test_postgresql_restart_while_workers_run_loses_nothing(
    tmp_path: Path, pg_schema_url: str
) -> None:
    cluster = (
        sorted(os.listdir("/etc/postgresql"))[-1] if os.path.isdir("/etc/postgresql") else None
    )
    if cluster is None or not Path("/usr/bin/pg_ctlcluster").exists():
        pytest.fail("pg_ctlcluster is needed to restart PostgreSQL (Debian's postgresql-common)")
    env = Env(tmp_path / "pgr", pg_schema_url)
    try:
        with raw_sink() as sink, Postroom.open(settings=env.settings) as app:
            setup(app, sink, 600, max_connections=2)
            sink.gate.clear()
            sink.hold_from = 50
            workers = [env.worker("--drain", "--batch", "20", "--lease", "5") for _ in range(2)]
            wait_until(lambda: len(sink.data) >= 50, what="deliveries under way")
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            sink.gate.set()
            for w in workers:
                assert w.wait(300) == 0, w.stderr.read() if w.stderr else ""
            app.engine.dispose()
            errs = Counter(m.last_error for m in app.outbox.list(status="retrying", limit=1000))
            assert app.outbox.queue.counts() == {"sent": 600}, errs
            sent = {m.message_id for m in app.outbox.list(limit=1000)}
            assert sent <= set(message_ids(sink.accepted)) and len(sent) == 600
    finally:
        env.close()
        with Postroom.open(
            settings=Settings(data_dir=tmp_path / "pgr", database_url=pg_schema_url)
        ) as app:
            from tests.conftest import _truncate

            _truncate(app)
