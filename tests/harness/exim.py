"""A private Exim 4 on loopback high ports, run from the unpacked Debian package.

Everything lives in one directory: ``exim.conf``, the spool, the logs
(``log/mainlog``, ``log/rejectlog``, ``log/paniclog``) and the Maildirs
(``mail/<domain>/<local part>/Maildir``). Nothing leaves the machine: the only routers
deliver to the Maildirs here, or over LMTP to a private Cyrus (``lmtp_socket=``) for its users.

Ports (``EximServer.ports``), on ``127.0.0.1``:

    submission   STARTTLS, AUTH (CRAM-MD5, PLAIN, LOGIN) only after STARTTLS, mail only
                 from a signed-in client ("Authentication required" otherwise)
    submissions  implicit TLS, AUTH, the same rules
    submission_nopipe  like submission, without PIPELINING (postroom's one-command-at-a-time
                 delivery path)

Exim's own behaviour, kept as Debian ships it: SMTPUTF8 and SIZE are advertised, a sender
that is refused is refused at MAIL (``blocked@postroom.test`` here), and a message over
``message_size_limit`` (``size_limit``) is refused with 552 — after its body was received,
unless the client declared ``SIZE=`` on MAIL FROM.

The recipe (FIELD-NOTES.md): Exim's compiled-in ``exim_user`` is ``Debian-exim``; the binary
must not be set-uid (a set-uid Exim re-executes its delivery processes in secure mode, which
drops ``LD_LIBRARY_PATH``); ``exim_path`` and ``keep_environment`` point it at itself.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from pathlib import Path

from . import unpacked
from .certs import HarnessCerts
from .mailservers import DEFAULT_USERS, DOMAIN, HarnessStartError

EXIM_USER = "Debian-exim"
BINARY = "usr/sbin/exim4"
PORT_NAMES = ("submission", "submissions", "submission_nopipe")
BLOCKED_SENDER = "blocked@postroom.test"
UTF8_MAILBOX = "用户"
MAILBOXES = (UTF8_MAILBOX, "carol", "postmaster")


def check_available() -> Path:
    return unpacked.require(BINARY, "exim4-daemon-light", (EXIM_USER,))


def version() -> str:
    """The Debian version of the unpacked Exim, e.g. ``4.96-15+deb12u11``."""
    return unpacked.versions().get("exim4-daemon-light", "unknown")


class EximServer:
    host = "127.0.0.1"
    domain = DOMAIN
    blocked_sender = BLOCKED_SENDER

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        certs: HarnessCerts,
        users: Mapping[str, str] | None = None,
        size_limit: int = 2 * 1024 * 1024,
        lmtp_socket: Path | None = None,
        lmtp_users: tuple[str, ...] = (),
        startup_timeout: float = 20.0,
    ) -> None:
        self.directory = Path(directory or tempfile.mkdtemp(prefix="postroom-exim-")).resolve()
        self.certs = certs
        self.users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        self.size_limit = size_limit
        self.lmtp_socket = lmtp_socket
        self.lmtp_users = lmtp_users
        #: local parts Exim delivers to a Maildir here (a UTF-8 one for SMTPUTF8 tests)
        self.mailboxes = sorted({u.partition("@")[0] for u in self.users} | set(MAILBOXES))
        self.startup_timeout = startup_timeout
        self.ports: dict[str, int] = {}
        self.config = self.directory / "exim.conf"
        self.log_dir = self.directory / "log"
        self.mainlog = self.log_dir / "mainlog"
        self.mail_root = self.directory / "mail"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def ca_pem(self) -> str:
        return self.certs.ca_pem

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- what tests look at --------------------------------------------------------------

    def maildir_of(self, user: str) -> Path:
        local, _, domain = user.partition("@")
        return self.mail_root / domain.lower() / local / "Maildir"

    def messages(self, user: str) -> list[EmailMessage]:
        found: list[tuple[str, EmailMessage]] = []
        for sub in ("new", "cur"):
            directory = self.maildir_of(user) / sub
            with contextlib.suppress(FileNotFoundError):
                for name in os.listdir(directory):
                    raw = (directory / name).read_bytes()
                    msg = email.message_from_bytes(raw, policy=email.policy.default)
                    assert isinstance(msg, EmailMessage)
                    found.append((name, msg))
        return [m for _, m in sorted(found, key=lambda item: item[0])]

    def wait_for_mail(
        self,
        user: str,
        predicate: Callable[[EmailMessage], bool] | None = None,
        timeout: float = 10.0,
    ) -> EmailMessage:
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.messages(user):
                if predicate is None or predicate(msg):
                    return msg
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no matching message for {user} after {timeout}s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def log_text(self) -> str:
        try:
            return self.mainlog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def failed_logins(self, user: str) -> int:
        """How many failed AUTH attempts for ``user`` Exim logged (one line each)."""
        return sum(
            1
            for line in self.log_text().splitlines()
            if "authenticator failed" in line and f"set_id={user}" in line
        )

    def mail_from_lines(self) -> list[str]:
        """What each MAIL FROM declared: ``MAIL FROM <sender> SIZE=<n|-1> SMTPUTF8=<bool>``."""
        return [
            line.split(" ", 2)[2] for line in self.log_text().splitlines() if " MAIL FROM <" in line
        ]

    def log_tail(self, lines: int = 30) -> str:
        text = "\n".join(self.log_text().splitlines()[-lines:])
        return f"--- {self.mainlog} ---\n{text}"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> EximServer:
        binary = check_available()
        exim = pwd.getpwnam(EXIM_USER)
        for path in (self.directory, self.log_dir, self.directory / "spool", self.mail_root):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, exim.pw_uid, exim.pw_gid)
        self.directory.chmod(0o755)
        # the reception processes read the key as Debian-exim
        tls = self.directory / "tls"
        tls.mkdir(exist_ok=True)
        for name, source in (
            ("cert.pem", self.certs.valid.cert),
            ("key.pem", self.certs.valid.key),
        ):
            shutil.copyfile(source, tls / name)
            os.chown(tls / name, exim.pw_uid, exim.pw_gid)
            (tls / name).chmod(0o600)
        passwd = self.directory / "passwd"
        passwd.write_text("".join(f"{u}: {p}\n" for u, p in self.users.items()))
        os.chown(passwd, 0, exim.pw_gid)
        passwd.chmod(0o640)
        self.ports = dict(zip(PORT_NAMES, unpacked.free_ports(len(PORT_NAMES)), strict=True))
        self._write_config(binary, tls, passwd)
        env = dict(os.environ, LD_LIBRARY_PATH=unpacked.library_path())
        out = (self.log_dir / "daemon.out").open("wb")
        # -bdf: the daemon stays in the foreground (our child), -q1s: queue runs every second
        self._proc = subprocess.Popen(
            [str(binary), "-C", str(self.config), "-bdf", "-q1s"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + self.startup_timeout
        while not unpacked.wait_for_banner(self.host, self.ports["submission"], b"220 "):
            if self._proc.poll() is not None or time.monotonic() >= deadline:
                self.stop()
                raise HarnessStartError(
                    "Exim did not start:\n"
                    + (self.log_dir / "daemon.out").read_text(errors="replace")[-2000:]
                    + "\n"
                    + self.log_tail()
                    + "\n"
                    + _tail(self.log_dir / "paniclog")
                )
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # the daemon's session holds its reception and delivery children too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _write_config(self, binary: Path, tls: Path, passwd: Path) -> None:
        sub, subs = self.ports["submission"], self.ports["submissions"]
        nopipe = self.ports["submission_nopipe"]
        lmtp_router = ""
        if self.lmtp_socket is not None and self.lmtp_users:
            local_parts = " : ".join(u.split("@")[0] for u in self.lmtp_users)
            lmtp_router = f"""
cyrus:
  driver = accept
  domains = {DOMAIN}
  local_parts = {local_parts}
  transport = cyrus_lmtp
"""
        lmtp_transport = (
            f"\ncyrus_lmtp:\n  driver = lmtp\n  socket = {self.lmtp_socket}\n  batch_max = 20\n"
            if lmtp_router
            else ""
        )
        mailboxes = self.directory / "mailboxes"
        mailboxes.write_text("".join(f"{m}: {m}\n" for m in self.mailboxes))
        lookup = f"${{lookup{{$auth2}}lsearch{{{passwd}}}{{$value}}fail}}"
        self.config.write_text(f"""\
# Generated by tests/harness/exim.py -- private test instance, loopback only.
exim_path = {binary}
keep_environment = LD_LIBRARY_PATH
spool_directory = {self.directory / "spool"}
log_file_path = {self.log_dir}/%slog
log_selector = +smtp_protocol_error +smtp_syntax_error +tls_peerdn
primary_hostname = exim.{DOMAIN}
qualify_domain = {DOMAIN}
local_interfaces = <; 127.0.0.1.{sub} ; 127.0.0.1.{subs} ; 127.0.0.1.{nopipe}
tls_on_connect_ports = {subs}
tls_advertise_hosts = *
tls_certificate = {tls / "cert.pem"}
tls_privatekey = {tls / "key.pem"}
auth_advertise_hosts = ${{if eq{{$tls_in_cipher}}{{}}{{}}{{*}}}}
message_size_limit = {self.size_limit}
smtputf8_advertise_hosts = *
host_lookup =
rfc1413_hosts =
never_users = root
pipelining_advertise_hosts = ${{if eq{{$received_port}}{{{nopipe}}}{{}}{{*}}}}
chunking_advertise_hosts =
smtp_accept_max = 200
smtp_accept_queue_per_connection = 0
smtp_enforce_sync = false
remote_max_parallel = 4
queue_run_max = 2
split_spool_directory = false
timeout_frozen_after = 1m
ignore_bounce_errors_after = 0s
acl_smtp_mail = acl_check_mail
acl_smtp_rcpt = acl_check_rcpt
acl_smtp_data = acl_check_data

domainlist local_domains = {DOMAIN}

begin acl

acl_check_mail:
  # what the client declared on MAIL FROM ($message_size is SIZE=, -1 without it)
  warn    logwrite = MAIL FROM <$sender_address> SIZE=$message_size SMTPUTF8=$message_smtputf8
  deny    message = Sender blocked by the test server
          senders = {BLOCKED_SENDER}
  accept

acl_check_rcpt:
  deny    message = Authentication required
          !authenticated = *
  require message = relay not permitted
          domains = +local_domains
  accept

acl_check_data:
  accept

begin routers
{lmtp_router}
maildir:
  driver = accept
  domains = +local_domains
  local_parts = lsearch;{mailboxes}
  transport = maildir_delivery

begin transports

maildir_delivery:
  driver = appendfile
  directory = {self.mail_root}/$domain_data/$local_part_data/Maildir
  maildir_format
  create_directory
  delivery_date_add
  envelope_to_add
  return_path_add
  mode = 0640
{lmtp_transport}
begin retry
*  *  F,1m,2s

begin authenticators

cram_md5:
  driver = cram_md5
  public_name = CRAM-MD5
  server_secret = ${{lookup{{$auth1}}lsearch{{{passwd}}}{{$value}}fail}}
  server_set_id = $auth1

plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${{if eq{{$auth3}}{{{lookup}}}}}
  server_set_id = $auth2

login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = ${{if eq{{$auth2}}{{${{lookup{{$auth1}}lsearch{{{passwd}}}{{$value}}fail}}}}}}
  server_set_id = $auth1
""")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
