"""An outbox with something of everything, for the Outbox and Actions pages' tests.

Messages go through an in-process SMTP sink (which refuses some recipients) and a profile
pointing at a closed port, and a real worker drains them, so the pages show real attempts.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from postroom import Postroom
from postroom.actions.service import ActionRead
from postroom.outbox.service import SendRequest
from postroom.outbox.worker import Worker
from tests.integration.smtp_fakes import closed_port, raw_sink

REFUSED = "gone@postroom.test"
BUSY = "busy@postroom.test"


@dataclass(frozen=True)
class Seeded:
    sent: int
    partly_refused: int
    failed: int
    retrying: int
    unreachable: int
    scheduled: int


def drain(pr: Postroom) -> None:
    """Run a worker until nothing is due, in its own thread.

    A thread, because Playwright's sync API marks an event loop as running in the test's
    thread, where ``asyncio.run`` would refuse to start.
    """
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker = Worker(pr, poll_s=0.05)
            asyncio.run(asyncio.wait_for(worker.run(drain=True), 60))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="outbox-drain")
    thread.start()
    thread.join(90)
    if errors:
        raise errors[0]


def _profile(pr: Postroom, name: str, port: int, **extra: object) -> None:
    pr.profiles.create(
        {
            "name": name,
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "auth": "none",
                     "connect_timeout_s": 3, "send_timeout_s": 3},
            "sender": {"from_address": "robot@postroom.test", "from_name": "Robot"},
            **extra,
        }
    )  # fmt: skip


def _msg(subject: str, *to: str) -> dict[str, object]:
    return {"to": list(to), "subject": subject, "text": "Details inside."}


def seed_outbox(pr: Postroom) -> Seeded:
    """Sent, partly refused, failed (550), retrying (451 and connection refused), scheduled."""
    replies = {REFUSED: "550 5.1.1 no such user here", BUSY: "451 4.2.1 mailbox busy, try later"}
    with raw_sink(rcpt_reply=replies) as sink:
        _profile(pr, "Alerts", sink.port)
        _profile(pr, "Legacy relay", closed_port())
        sent = pr.send(
            _msg("Nightly build #412 passed", "dev-team@postroom.test"),
            profile="Alerts",
            process="nightly-build",
        )
        partly, failed, retrying = pr.send_many(
            [
                SendRequest(
                    _msg("Weekly summary", "bob@postroom.test", REFUSED, "carol@postroom.test"),
                    profile="Alerts",
                    process="reports",
                ),
                SendRequest(_msg("Invoice run failed", REFUSED), "Alerts", "billing"),
                SendRequest(_msg("Disk almost full on db-2", BUSY), "Alerts", "monitoring"),
            ]
        )
        unreachable = pr.send(_msg("Password reset", "dana@postroom.test"), profile="Legacy relay")
        scheduled = pr.send(
            _msg("Quarterly report", "board@postroom.test"),
            profile="Alerts",
            process="reports",
            send_at=datetime.now(UTC) + timedelta(hours=2),
        )
        drain(pr)
    return Seeded(sent, partly, failed, retrying, unreachable, scheduled)


def seed_actions(pr: Postroom) -> tuple[ActionRead, ActionRead, ActionRead]:
    """A pending, a decided (by its link) and an expired action request."""
    _profile(pr, "Approvals", 1, email_actions_base_url="https://automation.example.com/orch")
    pr.bind("release-pipeline", "Approvals")

    def create(subject: str) -> ActionRead:
        return pr.actions.create(
            process="release-pipeline",
            to=["lead@postroom.test", "cto@postroom.test"],
            subject=subject,
            text="Release 4.2 passed all checks.",
            choices=["approve", "reject"],
            context={"release": "4.2", "build": 412},
        )

    pending = create("Deploy release 4.2 to production?")
    decided = create("Deploy hotfix 4.1.3?")
    assert pr.actions.decide_by_link(token_of(decided.links["approve"])).ok
    expired = create("Roll back release 4.0?")
    with pr.sessions() as s:
        from postroom.actions.tables import ActionRequest

        row = s.get(ActionRequest, expired.id)
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(minutes=5)
        s.commit()
    return pending, decided, expired


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def all_tokens(*actions: ActionRead) -> list[str]:
    """Every link token of these requests (none may ever reach a page)."""
    return [
        token_of(url)
        for a in actions
        for links in a.links_by_recipient.values()
        for url in links.values()
    ]
