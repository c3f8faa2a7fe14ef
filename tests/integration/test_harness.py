"""The real Postfix + Dovecot harness works with ordinary clients (smtplib, imaplib)."""

from __future__ import annotations

import imaplib
import smtplib
import socket
import ssl
import uuid
from collections.abc import Callable
from email.message import EmailMessage

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.harness.certs import HarnessCerts
from tests.harness.mailservers import MailServers

pytestmark = pytest.mark.mailservers

ALICE = ("alice@postroom.test", "alice-secret-1")
BOB = ("bob@postroom.test", "bob-secret-2")


def _message(sender: str, recipient: str) -> tuple[EmailMessage, str]:
    token = uuid.uuid4().hex
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = f"harness test {token}"
    msg.set_content(f"hello from the harness test, token {token}\n")
    return msg, token


def _subject_has(token: str) -> Callable[[EmailMessage], bool]:
    return lambda message: token in str(message["Subject"])


def _imap_search_subject(imap: imaplib.IMAP4, token: str) -> list[bytes]:
    typ, data = imap.select("INBOX")
    assert typ == "OK", data
    typ, data = imap.search(None, "SUBJECT", f'"{token}"')
    assert typ == "OK", data
    return (data[0] or b"").split()


def test_starttls_submission_delivers_to_bob_over_imap(mail_servers: MailServers) -> None:
    ctx = mail_servers.client_ssl_context()
    msg, token = _message(ALICE[0], BOB[0])
    with smtplib.SMTP(mail_servers.host, mail_servers.ports["submission"], timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth"), "AUTH must not be offered before STARTTLS"
        smtp.starttls(context=ctx)
        smtp.ehlo()
        assert smtp.has_extn("auth")
        smtp.login(*ALICE)
        assert smtp.send_message(msg) == {}

    delivered = mail_servers.wait_for_mail(BOB[0], _subject_has(token))
    assert delivered["From"] == ALICE[0]

    with imaplib.IMAP4_SSL(mail_servers.host, mail_servers.ports["imaps"], ssl_context=ctx) as imap:
        imap.login(*BOB)
        ids = _imap_search_subject(imap, token)
        assert len(ids) == 1
        typ, data = imap.fetch(ids[0].decode(), "(BODY.PEEK[TEXT])")
        assert typ == "OK"
        part = data[0]
        assert isinstance(part, tuple)
        assert token.encode() in part[1]


def test_submission_refuses_mail_before_starttls(mail_servers: MailServers) -> None:
    with smtplib.SMTP(mail_servers.host, mail_servers.ports["submission"], timeout=10) as smtp:
        smtp.ehlo()
        code, reply = smtp.mail(ALICE[0])
        assert code == 530, reply
        assert b"STARTTLS" in reply


def test_implicit_tls_submission(mail_servers: MailServers) -> None:
    ctx = mail_servers.client_ssl_context()
    msg, token = _message(BOB[0], ALICE[0])
    with smtplib.SMTP_SSL(
        mail_servers.host, mail_servers.ports["submissions"], context=ctx, timeout=10
    ) as smtp:
        smtp.login(*BOB)
        assert smtp.send_message(msg) == {}
    mail_servers.wait_for_mail(ALICE[0], _subject_has(token))


def test_submission_without_auth_cannot_send(mail_servers: MailServers) -> None:
    ctx = mail_servers.client_ssl_context()
    with smtplib.SMTP_SSL(
        mail_servers.host, mail_servers.ports["submissions"], context=ctx, timeout=10
    ) as smtp:
        smtp.ehlo()
        assert smtp.mail(ALICE[0])[0] == 250
        code, reply = smtp.rcpt(BOB[0])
        assert code == 554, reply


@pytest.mark.parametrize("port", ["submission", "submissions"])
def test_wrong_password_gets_535(mail_servers: MailServers, port: str) -> None:
    ctx = mail_servers.client_ssl_context()
    smtp: smtplib.SMTP
    if port == "submission":
        smtp = smtplib.SMTP(mail_servers.host, mail_servers.ports[port], timeout=10)
        smtp.starttls(context=ctx)
    else:
        smtp = smtplib.SMTP_SSL(mail_servers.host, mail_servers.ports[port], context=ctx)
    with smtp:
        smtp.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as excinfo:
            smtp.login(ALICE[0], "not-the-password")
        assert excinfo.value.smtp_code == 535


def test_rejected_recipient_gets_5xx(mail_servers: MailServers) -> None:
    ctx = mail_servers.client_ssl_context()
    msg, _ = _message(ALICE[0], mail_servers.rejected_recipient)
    with smtplib.SMTP_SSL(
        mail_servers.host, mail_servers.ports["submissions"], context=ctx, timeout=10
    ) as smtp:
        smtp.login(*ALICE)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as excinfo:
            smtp.send_message(msg)
    code, reply = excinfo.value.recipients[mail_servers.rejected_recipient]
    assert code == 550
    assert b"5.1.1" in reply


def test_blocked_sender_rejected_at_mail_from(mail_servers: MailServers) -> None:
    msg, _ = _message(mail_servers.blocked_sender, BOB[0])
    with smtplib.SMTP(mail_servers.host, mail_servers.ports["plain"], timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPSenderRefused) as excinfo:
            smtp.send_message(msg)
    assert excinfo.value.smtp_code == 553


def test_plain_port_accepts_local_mail_only(mail_servers: MailServers) -> None:
    msg, token = _message("someone@example.org", BOB[0])
    with smtplib.SMTP(mail_servers.host, mail_servers.ports["plain"], timeout=10) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        assert not smtp.has_extn("auth")
        assert smtp.send_message(msg) == {}
        assert smtp.mail("someone@example.org")[0] == 250
        code, reply = smtp.rcpt("victim@example.com")
        assert code == 554 and b"Relay access denied" in reply, reply
    mail_servers.wait_for_mail(BOB[0], _subject_has(token))


def test_add_user_can_receive_and_log_in(mail_servers: MailServers) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}@postroom.test"
    mail_servers.add_user(user, "fresh-password-3")
    msg, token = _message(ALICE[0], user)
    with smtplib.SMTP(mail_servers.host, mail_servers.ports["plain"], timeout=10) as smtp:
        smtp.send_message(msg)
    mail_servers.wait_for_mail(user, _subject_has(token))
    ctx = mail_servers.client_ssl_context()
    with imaplib.IMAP4_SSL(mail_servers.host, mail_servers.ports["imaps"], ssl_context=ctx) as imap:
        imap.login(user, "fresh-password-3")
        assert len(_imap_search_subject(imap, token)) == 1


def _presented_cert(port: int) -> x509.Certificate:
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with unverified.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _file_cert(path: str) -> x509.Certificate:
    with open(path, "rb") as fh:
        return x509.load_pem_x509_certificate(fh.read())


# verify_code per name the client checks: (for "localhost", for "127.0.0.1")
BAD_CERTS = {
    "smtps_selfsigned": ("self_signed", (18, 18), ("self-signed certificate",) * 2),
    "smtps_expired": ("expired", (10, 10), ("certificate has expired",) * 2),
    "smtps_wronghost": ("wrong_host", (62, 64), ("Hostname mismatch", "IP address mismatch")),
}


@pytest.mark.parametrize("port", sorted(BAD_CERTS))
def test_bad_certificate_listeners(
    mail_servers: MailServers, harness_certs: HarnessCerts, port: str
) -> None:
    which, codes, texts = BAD_CERTS[port]
    expected = _file_cert(getattr(mail_servers.certs, which).cert)
    presented = _presented_cert(mail_servers.ports[port])
    assert presented.public_bytes(serialization.Encoding.DER) == expected.public_bytes(
        serialization.Encoding.DER
    )

    ctx = harness_certs.client_context()
    for server_hostname, code, text in zip(("localhost", "127.0.0.1"), codes, texts, strict=True):
        with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
            _verified_connect(mail_servers.ports[port], ctx, server_hostname)
        assert excinfo.value.verify_code == code
        assert text in str(excinfo.value)
    # The same failure through an ordinary SMTP client.
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(mail_servers.host, mail_servers.ports[port], context=ctx, timeout=10)


def _verified_connect(port: int, ctx: ssl.SSLContext, server_hostname: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname):
            pass


def test_valid_certificate_verifies_for_localhost_and_ip(mail_servers: MailServers) -> None:
    ctx = mail_servers.client_ssl_context()
    for name in ("submissions", "imaps"):
        for server_hostname in ("localhost", "127.0.0.1"):
            _verified_connect(mail_servers.ports[name], ctx, server_hostname)


def test_bad_certificate_listener_still_works_unverified(mail_servers: MailServers) -> None:
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP_SSL(
        mail_servers.host, mail_servers.ports["smtps_expired"], context=unverified, timeout=10
    ) as smtp:
        smtp.login(*ALICE)
        assert smtp.noop()[0] == 250


def test_imap_starttls_login(mail_servers: MailServers) -> None:
    ctx = mail_servers.client_ssl_context()
    with imaplib.IMAP4(mail_servers.host, mail_servers.ports["imap"], timeout=10) as imap:
        assert "STARTTLS" in imap.capabilities
        imap.starttls(ssl_context=ctx)
        assert imap.login(*ALICE)[0] == "OK"
        status, folders = imap.list()
        assert status == "OK"
        assert any(b"\\Sent" in line for line in folders if isinstance(line, bytes))


def test_imaps_login_and_wrong_password(mail_servers: MailServers) -> None:
    ctx = mail_servers.client_ssl_context()
    with imaplib.IMAP4_SSL(mail_servers.host, mail_servers.ports["imaps"], ssl_context=ctx) as imap:
        assert imap.login(*BOB)[0] == "OK"
        assert imap.select("INBOX")[0] == "OK"
    with imaplib.IMAP4_SSL(mail_servers.host, mail_servers.ports["imaps"], ssl_context=ctx) as imap:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login(BOB[0], "wrong")


def test_missing_binary_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.harness import mailservers

    monkeypatch.setattr(
        mailservers, "_which", lambda name: None if name == "dovecot" else f"/usr/sbin/{name}"
    )
    with pytest.raises(mailservers.HarnessUnavailable) as excinfo:
        mailservers.check_available()
    assert excinfo.value.binary == "dovecot"
    assert "dovecot-core" in excinfo.value.reason


def test_not_root_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.harness import mailservers

    monkeypatch.setattr(mailservers, "_which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(mailservers, "_dovecot_program", lambda name: f"/usr/lib/dovecot/{name}")
    monkeypatch.setattr("pwd.getpwnam", lambda name: None)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(mailservers.HarnessUnavailable, match="root"):
        mailservers.check_available()
