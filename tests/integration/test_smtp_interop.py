"""SMTP behaviour that differs between real servers (issue 17), checked on each of them:
Postfix 3.7 (+ Dovecot SASL) and Exim 4.96, both from Debian (docs/interop.md)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from postroom import Postroom
from postroom.diagnostics.smtp_probe import probe_smtp
from postroom.diagnostics.steps import Diagnosis
from postroom.net.policy import NetPolicy
from postroom.outbox.worker import Worker
from postroom.profiles.schemas import parse_spec

ALICE, ALICE_PW = "alice@postroom.test", "alice-secret-1"
BOB = "bob@postroom.test"


@dataclass
class Server:
    """One real SMTP server of the harness, as the tests see it."""

    name: str
    host: str
    ports: dict[str, int]
    ca_pem: str
    failed_logins: Callable[[str], int]
    wait_for_mail: Callable[..., EmailMessage]
    #: a mailbox reached only with SMTPUTF8
    utf8_mailbox: str


def _postfix_failed_logins(log: Path) -> Callable[[str], int]:
    # Dovecot (Postfix's SASL) logs each refused password once, naming the user
    def count(user: str) -> int:
        text = log.read_text(errors="replace") if log.exists() else ""
        return len(re.findall(rf"\({re.escape(user)},[^)]*\): Password mismatch", text))

    return count


@pytest.fixture(params=["postfix", "exim"])
def server(request: pytest.FixtureRequest) -> Server:
    if request.param == "postfix":
        m = request.getfixturevalue("mail_servers")
        return Server(
            "postfix", m.host, m.ports, m.ca_pem, _postfix_failed_logins(m.dovecot_log),
            m.wait_for_mail, "用户@postroom.test",
        )  # fmt: skip
    e = request.getfixturevalue("exim")
    return Server(
        "exim", e.host, e.ports, e.ca_pem, e.failed_logins, e.wait_for_mail, "用户@postroom.test"
    )


def profile(server: Server, **smtp: Any) -> dict[str, Any]:
    return {
        "name": f"QA {server.name}",
        "smtp": {
            "host": server.host, "port": server.ports["submission"], "security": "starttls",
            "ca_bundle": Path(server.ca_pem).read_text(), "auth": "basic", "username": ALICE,
            "password": ALICE_PW, "connect_timeout_s": 5, "send_timeout_s": 10, **smtp,
        },
        "sender": {"from_address": ALICE, "from_name": "QA"},
    }  # fmt: skip


async def probe(data: dict[str, Any], **kw: Any) -> Diagnosis:
    d, _ = await probe_smtp(parse_spec(data), policy=NetPolicy(), **kw)
    return d


# -- item 5: one wrong password is one failed login ------------------------------------------


async def test_wrong_password_is_one_failed_login_in_the_connection_test(server: Server) -> None:
    before = server.failed_logins(ALICE)
    d = await probe(profile(server, password="wrong-password"))
    assert d.error is not None and d.error.code == "auth_failed"
    # the server's own log: exactly one refused login for this test
    await asyncio.sleep(0.2)  # the log line is written after the reply
    assert server.failed_logins(ALICE) - before == 1
    assert "AUTH PLAIN" in d.error.message and "AUTH PLAIN" in d.steps[-1].detail
    assert "wrong-password" not in d.model_dump_json()


def test_wrong_password_is_one_failed_login_in_delivery(
    sqlite_app: Postroom, server: Server
) -> None:
    sqlite_app.profiles.create(profile(server, password="wrong-password"))
    before = server.failed_logins(ALICE)
    id = sqlite_app.send({"to": [BOB], "subject": "x", "text": "y"}, profile=f"QA {server.name}")
    asyncio.run(Worker(sqlite_app, poll_s=0.05).run(drain=True))
    m = sqlite_app.outbox.get(id)
    assert m.status == "retrying" and "535" in (m.last_error or ""), m.last_error
    assert server.failed_logins(ALICE) - before == 1
    assert "AUTH PLAIN" in (m.last_error or "")


async def test_successful_login_names_the_mechanism(server: Server) -> None:
    d = await probe(profile(server))
    assert d.ok, d.error
    assert "with AUTH PLAIN" in d.steps[-1].detail
