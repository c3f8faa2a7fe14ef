"""The diagnosis, the CLI and delivery against the real Postfix + Dovecot of the harness."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from postroom import Postroom
from postroom.diagnostics.smtp_probe import probe_smtp
from postroom.diagnostics.steps import Diagnosis
from postroom.net.policy import NetPolicy
from postroom.outbox.worker import Worker
from postroom.profiles.schemas import parse_spec
from tests.harness.mailservers import MailServers

pytestmark = pytest.mark.mailservers

ALICE, ALICE_PW = "alice@postroom.test", "alice-secret-1"
BOB = "bob@postroom.test"


def ca_text(servers: MailServers) -> str:
    return Path(servers.ca_pem).read_text()


def spec_data(servers: MailServers, port_name: str = "submission", **smtp: Any) -> dict[str, Any]:
    security = "tls" if port_name.startswith("smtps") or port_name == "submissions" else "starttls"
    return {
        "name": "QA alerts",
        "smtp": {
            "host": servers.host, "port": servers.ports[port_name], "security": security,
            "ca_bundle": ca_text(servers), "auth": "basic", "username": ALICE,
            "password": ALICE_PW, "connect_timeout_s": 5, "send_timeout_s": 10, **smtp,
        },
        "sender": {"from_address": ALICE, "from_name": "QA alerts"},
        "imap": {
            "host": servers.host, "port": servers.ports["imaps"], "security": "tls",
            "ca_bundle": ca_text(servers), "auth": "basic", "username": BOB,
            "password": "bob-secret-2",
        },
    }  # fmt: skip


async def probe(data: dict[str, Any], **kw: Any) -> Diagnosis:
    d, _ = await probe_smtp(parse_spec(data), policy=NetPolicy(), **kw)
    return d


def code(d: Diagnosis) -> str | None:
    return d.error.code if d.error else None


async def test_starttls_submission_passes_every_step(mail_servers: MailServers) -> None:
    d = await probe(spec_data(mail_servers))
    assert d.ok, d.error
    assert [s.name for s in d.steps] == [
        "resolve",
        "connect",
        "greeting",
        "ehlo",
        "starttls",
        "tls",
        "auth",
    ]
    tls = d.steps[5].detail
    assert "TLSv1" in tls and "certificate for localhost" in tls and "AUTH" in tls


async def test_implicit_tls_submission_passes(mail_servers: MailServers) -> None:
    d = await probe(spec_data(mail_servers, "submissions"))
    assert d.ok, d.error
    assert [s.name for s in d.steps] == ["resolve", "connect", "tls", "ehlo", "auth"]


async def test_wrong_password_reports_auth_failed(mail_servers: MailServers) -> None:
    d = await probe(spec_data(mail_servers, password="wrong"))
    assert code(d) == "auth_failed" and "535" in d.error.message  # type: ignore[union-attr]
    assert "wrong" not in d.model_dump_json()


async def test_auth_before_starttls_is_not_offered(mail_servers: MailServers) -> None:
    d = await probe(spec_data(mail_servers, security="none"))
    assert code(d) == "auth_not_offered"


async def test_refused_sender(mail_servers: MailServers) -> None:
    data = spec_data(mail_servers)
    data["sender"]["from_address"] = "blocked@postroom.test"
    d = await probe(data, send_to=BOB)
    assert code(d) == "sender_rejected" and "553" in d.error.message  # type: ignore[union-attr]


async def test_refused_recipient(mail_servers: MailServers) -> None:
    d = await probe(spec_data(mail_servers), send_to="reject@postroom.test")
    assert code(d) == "recipient_rejected" and "550" in d.error.message  # type: ignore[union-attr]


async def test_test_message_arrives_marked_auto_generated(mail_servers: MailServers) -> None:
    d, token = await probe_smtp(
        parse_spec(spec_data(mail_servers)), policy=NetPolicy(), send_to=BOB
    )
    assert d.ok and token
    msg = await asyncio.to_thread(
        mail_servers.wait_for_mail, BOB, lambda m: m.get("X-Postroom-Test") == token
    )
    assert msg["Auto-Submitted"] == "auto-generated" and msg["X-Auto-Response-Suppress"] == "All"


@pytest.mark.parametrize(
    ("port", "host", "expected"),
    [
        ("smtps_selfsigned", None, "tls_certificate_untrusted"),
        ("smtps_expired", None, "tls_certificate_expired"),
        ("smtps_wronghost", "localhost", "tls_hostname_mismatch"),
    ],
)
async def test_bad_certificates(
    mail_servers: MailServers, port: str, host: str | None, expected: str
) -> None:
    data = spec_data(mail_servers, port)
    if host:
        data["smtp"]["host"] = host
    d = await probe(data)
    assert code(d) == expected, d
    assert d.steps[-1].name == "tls"


async def test_tls_to_the_starttls_port_is_wrong_mode(mail_servers: MailServers) -> None:
    d = await probe(spec_data(mail_servers, security="tls"))
    assert code(d) == "tls_wrong_mode"
    assert "starttls" in d.error.hint  # type: ignore[union-attr]


async def test_starttls_to_the_implicit_port_is_wrong_mode(mail_servers: MailServers) -> None:
    d = await probe(
        spec_data(mail_servers, "submissions", security="starttls", connect_timeout_s=2)
    )
    assert code(d) == "tls_wrong_mode"
    assert "set security to 'tls'" in d.error.hint  # type: ignore[union-attr]


def test_roundtrip_through_postfix_and_dovecot(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    data = spec_data(mail_servers)
    sqlite_app.profiles.create(data)
    d = sqlite_app.test_profile("QA alerts", send_to=BOB, roundtrip=True)
    assert d.ok, d.error
    assert d.steps[-1].name == "roundtrip" and "arrived after" in d.steps[-1].detail
    assert sqlite_app.profiles.get("QA alerts").last_test.ok  # type: ignore[union-attr]


def test_imap_test_of_a_saved_profile(sqlite_app: Postroom, mail_servers: MailServers) -> None:
    sqlite_app.profiles.create(spec_data(mail_servers))
    d = sqlite_app.test_profile("QA alerts", imap=True, smtp=False)
    assert d.ok and d.kind == "imap", d.error


def test_cli_profile_test_json_and_exit_codes(tmp_path: Path, mail_servers: MailServers) -> None:
    env = {**os.environ, "POSTROOM_DATA_DIR": str(tmp_path)}
    exe = str(Path(sys.executable).parent / "postroom")
    profile = tmp_path / "p.json"
    data = spec_data(mail_servers)
    data["smtp"]["password"] = "env:QA_SMTP_PW"
    profile.write_text(json.dumps(data))
    env["QA_SMTP_PW"] = ALICE_PW
    assert (
        subprocess.run(
            [exe, "profile", "apply", "-f", str(profile)], env=env, capture_output=True
        ).returncode
        == 0
    )
    ok = subprocess.run(
        [exe, "profile", "test", "QA alerts", "--json"], env=env, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    env["QA_SMTP_PW"] = "wrong-password"
    bad = subprocess.run(
        [exe, "profile", "test", "QA alerts"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert "auth_failed" in bad.stdout and "What to do:" in bad.stdout
    assert "wrong-password" not in bad.stdout + bad.stderr


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_outbox_delivers_through_postfix_into_dovecot(
    sqlite_app: Postroom, mail_servers: MailServers, loop: str
) -> None:
    """STARTTLS, SASL and PIPELINING on Postfix's submission port, on both event loops
    (the CLI's worker and serve run on uvloop)."""
    from postroom.aio import run

    sqlite_app.profiles.create(spec_data(mail_servers))
    subject = f"Run finished {uuid.uuid4().hex[:8]}"
    id = sqlite_app.send(
        {"to": [BOB], "subject": subject, "text": "412 passed"}, profile="QA alerts"
    )
    (run if loop == "uvloop" else asyncio.run)(Worker(sqlite_app, poll_s=0.05).run(drain=True))
    m = sqlite_app.outbox.get(id)
    assert m.status == "sent", m.last_error
    got = mail_servers.wait_for_mail(BOB, lambda msg: msg["Subject"] == subject)
    assert got["Message-ID"] == m.message_id


async def test_message_that_never_reaches_the_imap_folder_is_a_roundtrip_timeout(
    mail_servers: MailServers,
) -> None:
    """SMTP delivers to bob, but IMAP reads alice's mailbox: the test mail never shows up."""
    from postroom.diagnostics.probe import run_test

    data = spec_data(mail_servers)
    data["imap"]["username"], data["imap"]["password"] = ALICE, ALICE_PW
    d = await run_test(
        parse_spec(data), policy=NetPolicy(), roundtrip=True, send_to=BOB, roundtrip_wait_s=2
    )
    assert d.error is not None and d.error.code == "roundtrip_timeout"
    assert d.steps[-1].name == "roundtrip" and not d.steps[-1].ok
    assert "spam" in d.error.hint
