"""`postroom inbound run` does what `serve`'s sync does: a real reply through Postfix and
Dovecot, synced by `inbound run` alone, decides the actionable email it answers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from postroom import Postroom
from postroom.inbound.schemas import InboundStatus
from postroom.outbox.worker import Worker
from postroom.settings import Settings
from tests.harness.mailservers import MailServers
from tests.integration.test_actions_reply import deliver, reply
from tests.integration.test_inbound_support import inbound, new_mailbox, receiving_profile

pytestmark = pytest.mark.mailservers

EXE = str(Path(sys.executable).parent / "postroom")


def test_inbound_run_decides_an_actionable_email_by_reply(
    tmp_path: Path, mail_servers: MailServers
) -> None:
    data = tmp_path / "data"
    app = Postroom.open(settings=Settings(data_dir=data))
    proc: subprocess.Popen[bytes] | None = None
    try:
        user, pw = new_mailbox(mail_servers)
        name = receiving_profile(app, mail_servers, user, pw)
        app.profiles.update(name, {"email_actions_base_url": "https://automation.example.com"})
        app.bind("release-pipeline", name)
        action = app.actions.create(process="release-pipeline", to=["bob@postroom.test"],
                                    subject="Deploy 4.3?", text="Please decide.",
                                    choices=["approve", "reject"])  # fmt: skip
        asyncio.run(Worker(app, poll_s=0.05).run(drain=True))
        request = mail_servers.wait_for_mail(
            "bob@postroom.test", lambda m: action.id in str(m["Subject"])
        )
        proc = subprocess.Popen(
            [EXE, "inbound", "run", "--lease", "3", "--idle-renew", "5", "--rescan", "0.5"],
            env={**os.environ, "POSTROOM_DATA_DIR": str(data)},
            stderr=subprocess.PIPE,
        )
        reply_to = str(request["Reply-To"])
        genuine = reply(reply_to, request, "Approve, thanks.", sender="Bob <bob@postroom.test>")
        deliver(mail_servers, genuine, to=reply_to)
        service = inbound(app)
        deadline = time.monotonic() + 40
        while app.actions.get(action.id).status != "decided":
            rows = service.list(profile=name)
            # before: the reply was stored and processed, and the action never decided
            assert time.monotonic() < deadline, (rows, app.actions.get(action.id).status)
            assert proc.poll() is None, "inbound run exited"
            time.sleep(0.1)
        got = app.actions.get(action.id)
        assert (got.decision, got.decided_by, got.decided_via) == (
            "approve",
            "bob@postroom.test",
            "reply",
        )
        (row,) = service.list(profile=name)
        deadline = time.monotonic() + 20
        while service.summary(row.id).status is not InboundStatus.PROCESSED:
            assert time.monotonic() < deadline, service.summary(row.id)
            time.sleep(0.1)
        delivered = {d["subscriber"] for d in service.deliveries(row.id) if d["ok"]}
        assert "callback:actions.decide_by_reply" in delivered
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        app.close()
