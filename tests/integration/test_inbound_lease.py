"""Scale-out: two `postroom inbound run` processes, one mailbox, one listener at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom import Postroom
from postroom.inbound.schemas import ListenerState
from postroom.settings import Settings
from tests.harness.mailservers import MailServers
from tests.integration.test_inbound_support import (
    inbound,
    message,
    new_mailbox,
    receiving_profile,
    send_plain,
)

pytestmark = pytest.mark.mailservers

# `postroom inbound run` before the CLI registers the sub-app: the same Typer object.
RUN = (
    "import sys; from postroom.cli.inbound import inbound_app; "
    "inbound_app(['run', '--lease', '2', '--idle-renew', '5', '--rescan', '0.5'], "
    "prog_name='postroom inbound')"
)


def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def imap_sessions(servers: MailServers, user: str) -> int:
    """How many IMAP connections Dovecot has open for ``user`` (doveadm who)."""
    out = subprocess.run(
        ["doveadm", "-c", str(servers.dovecot_config), "who", "-1", user],
        capture_output=True,
        text=True,
        env=servers._env(),
        timeout=10,
    ).stdout
    return sum(1 for line in out.splitlines() if line.startswith(user) and " imap " in line)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def test_two_runners_share_a_mailbox_through_a_lease(
    data_dir: Path, mail_servers: MailServers
) -> None:
    app = Postroom.open(settings=Settings(data_dir=data_dir))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        user, pw = new_mailbox(mail_servers)
        name = receiving_profile(app, mail_servers, user, pw)
        service = inbound(app)
        env = {**os.environ, "POSTROOM_DATA_DIR": str(data_dir)}
        for _ in range(2):
            procs.append(
                subprocess.Popen([sys.executable, "-c", RUN], env=env, stderr=subprocess.PIPE)
            )
        first = wait_for(
            lambda: [h for h in service.health(name) if h.state is ListenerState.IDLE],
            timeout=45,  # two CLI processes starting: ~7 s of imports each on a loaded machine
            what="a listener",
        )[0]
        pids = {str(p.pid): p for p in procs}
        leader = pids[str(first.listener).split(":")[1]]
        follower = next(p for p in procs if p is not leader)
        time.sleep(1.5)  # the follower has tried for the lease a few times by now
        assert imap_sessions(mail_servers, user) == 1
        assert service.health(name)[0].listener == first.listener

        leader.send_signal(signal.SIGKILL)  # no clean stop: the lease must expire
        leader.wait(5)
        took_over = wait_for(
            lambda: [
                h
                for h in service.health(name)
                if h.listener and h.listener != first.listener and h.state is ListenerState.IDLE
            ],
            what="the follower taking over",
        )[0]
        assert str(took_over.listener).split(":")[1] == str(follower.pid)
        send_plain(mail_servers, user, message(user, "After the failover"))
        wait_for(lambda: service.list(profile=name, status="processed"), what="the message")
        assert len(service.list(profile=name)) == 1

        follower.send_signal(signal.SIGTERM)
        assert follower.wait(15) == 0
        assert service.health(name)[0].state is ListenerState.STOPPED
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
            if p.stderr is not None:
                p.stderr.close()
        app.close()
