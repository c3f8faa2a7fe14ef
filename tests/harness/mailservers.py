"""Private Postfix + Dovecot instances on loopback high ports, for integration tests.

Everything lives in one temporary directory: configuration, queue, mailboxes, sockets, logs.
Neither ``/etc/postfix`` nor ``/etc/dovecot`` is read or changed, the system instances are not
used, and several runs can coexist (each picks its own free ports and ``base_dir``).

Layout of ``MailServers.directory``::

    certs/                  CA + server certificates (unless the caller passed its own)
    postfix/etc/            main.cf, master.cf, sender_access, recipient_access
    postfix/queue/          queue_directory
    postfix/data/           data_directory
    dovecot/dovecot.conf    the Dovecot configuration
    dovecot/users           passwd-file: passdb and userdb
    dovecot/run/            base_dir: auth-postfix and lmtp sockets, master.pid
    mail/<domain>/<name>/   user homes, mail in Maildir/ (INBOX in Maildir/{new,cur})
    logs/postfix.log        Postfix maillog_file (postlogd)
    logs/dovecot.log        Dovecot log_path

Ports (``MailServers.ports``), all on ``127.0.0.1``:

    submission        Postfix, STARTTLS required, AUTH only after STARTTLS
    submissions       Postfix, implicit TLS (wrapper mode), AUTH
    plain             Postfix, no TLS, no AUTH, accepts mail for postroom.test only
    smtps_selfsigned  Postfix, implicit TLS with a self-signed certificate
    smtps_expired     Postfix, implicit TLS with an expired CA-signed certificate
    smtps_wronghost   Postfix, implicit TLS with a CA-signed cert for mail.example.net
    submission_owned  Postfix as Debian ships it on this point: STARTTLS + AUTH, the sender
                      must be owned by the signed-in user (reject_sender_login_mismatch), and
                      rejections wait for RCPT (smtpd_delay_reject = yes, the default), so a
                      foreign sender is refused as "553 5.7.1 … Sender address rejected: not
                      owned by user …" in the reply to RCPT TO
    imap              Dovecot, IMAP with STARTTLS
    imaps             Dovecot, IMAP over implicit TLS

OAuth2 (``oauth2_introspection_url=``): Dovecot gets an ``oauth2`` passdb for the XOAUTH2 and
OAUTHBEARER mechanisms that validates each bearer token at that RFC 7662 introspection URL
(``username`` must match the login, ``active`` must be true); Postfix's SASL goes through
Dovecot, so submission accepts the same tokens. The endpoint need not run when the servers
start: Dovecot asks it at each login (``dovecot/dovecot-oauth2.conf.ext``).

Test hooks: ``reject@postroom.test`` is refused as a recipient (550 5.1.1) and
``blocked@postroom.test`` as a sender (553 5.7.1, at MAIL FROM: ``smtpd_delay_reject=no``).
Postfix never delivers anywhere but Dovecot: every other transport is ``error:``.

Known limitation (see /work/shared/FIELD-NOTES.md): Dovecot treats a client whose IP equals
the server's IP as secure, and on loopback that is every client. So ``disable_plaintext_auth``
and ``ssl = required`` do not stop ``LOGIN`` before ``STARTTLS`` on the ``imap`` port here, and
the greeting does not advertise ``LOGINDISABLED``. Postfix has no such exception:
``smtpd_tls_auth_only`` holds on loopback.

Postfix's master must run as root, so the harness needs root (the fixtures skip otherwise).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import email
import email.policy
import grp
import hashlib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType

from .certs import HarnessCerts, generate_certs

DOMAIN = "postroom.test"
DEFAULT_USERS: dict[str, str] = {
    "alice@postroom.test": "alice-secret-1",
    "bob@postroom.test": "bob-secret-2",
}
# The resource-server client Dovecot authenticates as at the introspection endpoint.
INTROSPECTION_CLIENT = "dovecot"
INTROSPECTION_SECRET = "dovecot-introspection-secret"
REJECTED_RECIPIENT = "reject@postroom.test"
BLOCKED_SENDER = "blocked@postroom.test"
#: a mailbox with a UTF-8 local part (reached only with SMTPUTF8)
UTF8_MAILBOX = "用户@postroom.test"

SMTP_PORTS = (
    "submission",
    "submissions",
    "plain",
    "smtps_selfsigned",
    "smtps_expired",
    "smtps_wronghost",
    "submission_owned",
)
IMAP_PORTS = ("imap", "imaps")
_GREETINGS = {
    "plain": b"220 ",
    "submission": b"220 ",
    "submission_owned": b"220 ",
    "imap": b"* OK",
}
PORT_NAMES = SMTP_PORTS + IMAP_PORTS

# binary -> Debian package that ships it
_SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
_REQUIRED_COMMANDS = {
    "postfix": "postfix",
    "postconf": "postfix",
    "dovecot": "dovecot-core",
    "doveadm": "dovecot-core",
}
_POSTFIX_DAEMON_DIRS = ("/usr/lib/postfix/sbin", "/usr/libexec/postfix")
_DOVECOT_LIBEXEC_DIRS = ("/usr/lib/dovecot", "/usr/libexec/dovecot")
_REQUIRED_DOVECOT_PROGRAMS = {"imap": "dovecot-imapd", "lmtp": "dovecot-lmtpd"}
_SYSTEM_ACCOUNTS = ("postfix", "dovecot", "dovenull")
_POSTDROP_GROUP = "postdrop"
_MAIL_ACCOUNT = "mail"  # owner of the mailboxes; exists on every Debian system


class HarnessUnavailable(RuntimeError):
    """Postfix/Dovecot cannot run here (missing binary, not root): tests should skip."""

    def __init__(self, reason: str, binary: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.binary = binary


class HarnessStartError(RuntimeError):
    """The servers were installed but did not come up; the message includes the log tails."""


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + _SBIN_PATH)


def _dovecot_program(name: str) -> str | None:
    for directory in _DOVECOT_LIBEXEC_DIRS:
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return None


def check_available() -> None:
    """Raise :class:`HarnessUnavailable` if the servers cannot be started on this machine."""
    for command, package in _REQUIRED_COMMANDS.items():
        if _which(command) is None:
            raise HarnessUnavailable(
                f"`{command}` not found (Debian package {package})", binary=command
            )
    for program, package in _REQUIRED_DOVECOT_PROGRAMS.items():
        if _dovecot_program(program) is None:
            raise HarnessUnavailable(
                f"Dovecot's `{program}` program not found (Debian package {package})",
                binary=program,
            )
    for account in (*_SYSTEM_ACCOUNTS, _MAIL_ACCOUNT):
        try:
            pwd.getpwnam(account)
        except KeyError:
            raise HarnessUnavailable(
                f"system user `{account}` is missing (reinstall postfix/dovecot-core)"
            ) from None
    if os.geteuid() != 0:
        raise HarnessUnavailable("Postfix's master daemon must be started as root")


def introspection_url(port: int, host: str = "127.0.0.1") -> str:
    """The RFC 7662 endpoint of a local authorization server, with Dovecot's client login."""
    return f"http://{INTROSPECTION_CLIENT}:{INTROSPECTION_SECRET}@{host}:{port}/introspect"


def _free_ports(count: int) -> list[int]:
    """Ask the kernel for ``count`` distinct free TCP ports on 127.0.0.1."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _ssha512(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "{SSHA512}" + base64.b64encode(digest + salt).decode()


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({path}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # The daemons are reparented to PID 1; if that is not a real init it may reap late, and
    # kill(pid, 0) succeeds on a zombie.
    return _proc_stat(pid)[:1] != ["Z"]


def _proc_stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, session...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def _session_of(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[3]) if len(fields) > 3 else None


def _session_members(sessions: set[int]) -> set[int]:
    """Live processes in the given sessions (never our own session)."""
    own = os.getsid(0)
    members = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            sid = _session_of(int(entry))
            if sid is not None and sid in sessions and sid != own:
                members.add(int(entry))
    return members


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class MailServers:
    """A private Postfix (submission, LMTP to Dovecot) + Dovecot (IMAP, LMTP, auth)."""

    host = "127.0.0.1"
    domain = DOMAIN
    rejected_recipient = REJECTED_RECIPIENT
    blocked_sender = BLOCKED_SENDER

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        certs: HarnessCerts | None = None,
        users: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        oauth2_introspection_url: str | None = None,
    ) -> None:
        if directory is None:
            directory = tempfile.mkdtemp(prefix="postroom-mail-")
        self.directory = Path(directory).resolve()
        self.startup_timeout = startup_timeout
        self._certs = certs
        # With an introspection URL, Dovecot (and Postfix's SASL through it) also accepts
        # XOAUTH2/OAUTHBEARER bearer tokens, validated at that RFC 7662 endpoint per login.
        self.oauth2_introspection_url = oauth2_introspection_url
        self.users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        self.ports: dict[str, int] = {}
        self.postfix_config_dir = self.directory / "postfix" / "etc"
        self.postfix_queue_dir = self.directory / "postfix" / "queue"
        self.postfix_data_dir = self.directory / "postfix" / "data"
        self.dovecot_config = self.directory / "dovecot" / "dovecot.conf"
        self.dovecot_base_dir = self.directory / "dovecot" / "run"
        self.users_file = self.directory / "dovecot" / "users"
        self.mail_root = self.directory / "mail"
        self.logs_dir = self.directory / "logs"
        self.postfix_log = self.logs_dir / "postfix.log"
        self.dovecot_log = self.logs_dir / "dovecot.log"
        self.auth_socket = self.dovecot_base_dir / "auth-postfix"
        self.lmtp_socket = self.dovecot_base_dir / "lmtp"
        self._users_mtime = 0
        self._running = False

    # -- public helpers ---------------------------------------------------------------------

    @property
    def certs(self) -> HarnessCerts:
        if self._certs is None:
            raise RuntimeError("MailServers.start() has not generated the certificates yet")
        return self._certs

    @property
    def ca_pem(self) -> str:
        """Path of the test CA's PEM certificate."""
        return self.certs.ca_pem

    @property
    def running(self) -> bool:
        return self._running

    def client_ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts the test CA."""
        return self.certs.client_context()

    def maildir_of(self, user: str) -> Path:
        """The user's Maildir (INBOX is ``<maildir>/new`` + ``<maildir>/cur``)."""
        local, _, domain = user.lower().partition("@")
        return self.mail_root / (domain or DOMAIN) / local / "Maildir"

    def add_user(self, user: str, password: str) -> None:
        """Add (or change the password of) a mailbox user; effective immediately."""
        for value in (user, password):
            if any(ch in value for ch in ":\r\n\0") or not value:
                raise ValueError(f"unusable value for the passwd-file: {value!r}")
        if "@" not in user:
            raise ValueError("users are full addresses, e.g. carol@postroom.test")
        self.users[user.lower()] = password
        if self._running:
            self._write_users()
            self._wait_for_auth(user.lower(), password)
        elif self.users_file.parent.exists():
            self._write_users()

    def messages(self, user: str, mailbox: str = "INBOX") -> list[EmailMessage]:
        """Every message currently in ``mailbox`` of ``user``, read from the Maildir."""
        maildir = self.maildir_of(user)
        if mailbox.upper() != "INBOX":
            maildir = maildir / ("." + mailbox.replace("/", "."))
        found: list[tuple[str, EmailMessage]] = []
        for sub in ("new", "cur"):
            try:
                names = os.listdir(maildir / sub)
            except FileNotFoundError:
                continue
            for name in names:
                try:
                    raw = (maildir / sub / name).read_bytes()
                except FileNotFoundError:  # moved new/ -> cur/ by an IMAP session meanwhile
                    continue
                message = email.message_from_bytes(raw, policy=email.policy.default)
                assert isinstance(message, EmailMessage)
                found.append((name, message))
        found.sort(key=lambda item: item[0])  # Maildir names start with the delivery time
        return [message for _, message in found]

    def wait_for_mail(
        self,
        user: str,
        predicate: Callable[[EmailMessage], bool] | None = None,
        timeout: float = 10.0,
        mailbox: str = "INBOX",
    ) -> EmailMessage:
        """Wait until a message matching ``predicate`` is in ``user``'s mailbox; return it."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages(user, mailbox):
                if predicate is None or predicate(message):
                    return message
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no matching message for {user} in {mailbox} after {timeout}s\n"
                    + self.log_tail(15)
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        return (
            f"--- {self.postfix_log} ---\n{_tail(self.postfix_log, lines)}\n"
            f"--- {self.dovecot_log} ---\n{_tail(self.dovecot_log, lines)}"
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> MailServers:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> MailServers:
        """Write the configuration, start both servers, return once every port accepts."""
        if self._running:
            return self
        check_available()
        self._prepare_directories()
        if self._certs is None:
            self._certs = generate_certs(self.directory / "certs")
        self.ports = dict(zip(PORT_NAMES, _free_ports(len(PORT_NAMES)), strict=True))
        self._write_users()
        self._write_dovecot_config()
        self._write_postfix_config()
        self._running = True
        atexit.register(self.stop)
        try:
            self._launch()
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers (idempotent). Files stay in place for debugging: see cleanup()."""
        if not self._running:
            return
        self._running = False
        atexit.unregister(self.stop)
        postfix_pid = self._our_pid(self.postfix_queue_dir / "pid" / "master.pid")
        dovecot_pid = self._our_pid(self.dovecot_base_dir / "master.pid")
        if postfix_pid is not None:
            # SIGTERM is how `postfix stop` asks the master to stop.
            with contextlib.suppress(ProcessLookupError):
                os.kill(postfix_pid, signal.SIGTERM)
        else:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["postfix", "-c", str(self.postfix_config_dir), "stop"],
                    env=self._env(),
                    capture_output=True,
                    timeout=20,
                )
        if dovecot_pid is not None:
            # What `doveadm stop` does, minus its slow polling.
            with contextlib.suppress(ProcessLookupError):
                os.kill(dovecot_pid, signal.SIGTERM)
        else:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["doveadm", "-c", str(self.dovecot_config), "stop"],
                    env=self._env(),
                    capture_output=True,
                    timeout=20,
                )
        self._wait_gone([pid for pid in (postfix_pid, dovecot_pid) if pid is not None])

    def cleanup(self) -> None:
        """Stop if needed and delete the whole directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _env() -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = env.get("PATH", "") + os.pathsep + _SBIN_PATH
        env.pop("MAIL_CONFIG", None)
        return env

    def _our_pid(self, pid_file: Path) -> int | None:
        """The pid in ``pid_file`` if that process is one of our masters (pids get reused)."""
        pid = _read_pid(pid_file)
        if pid is None or not _pid_alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            return None
        # Postfix's master chdirs to its queue; Dovecot's has `-c <our dovecot.conf>`.
        mine = str(self.directory).encode() in cmdline or cwd.startswith(str(self.directory))
        return pid if mine else None

    @staticmethod
    def _wait_gone(pids: list[int], grace: float = 2.0) -> None:
        """Wait for the masters to exit; then SIGKILL what is left of their sessions.

        Both masters run in a session of their own (setsid, session id == master pid).
        Dovecot normally exits in ~0.1-1 s, but stopped right after a start, login processes
        still waiting for the stats service hang for 5 s: no need to wait for them.
        """
        sessions = {pid for pid in pids if _session_of(pid) == pid}
        deadline = time.monotonic() + grace
        while any(_pid_alive(pid) for pid in pids):
            if time.monotonic() >= deadline:
                for victim in _session_members(sessions) | {p for p in pids if _pid_alive(p)}:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, signal.SIGKILL)
                return
            time.sleep(0.02)

    def _prepare_directories(self) -> None:
        mail = pwd.getpwnam(_MAIL_ACCOUNT)
        self.directory.mkdir(parents=True, exist_ok=True)
        # The daemons' unprivileged users must be able to traverse to sockets and mailboxes.
        self.directory.chmod(0o755)
        for path in (
            self.postfix_config_dir,
            self.postfix_queue_dir,
            self.dovecot_base_dir.parent,
            self.logs_dir,
        ):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o755)
        (self.directory / "postfix").chmod(0o755)
        self.mail_root.mkdir(exist_ok=True)
        os.chown(self.mail_root, mail.pw_uid, mail.pw_gid)
        self.mail_root.chmod(0o750)
        if len(str(self.dovecot_base_dir / "auth-userdb")) > 100:
            raise HarnessStartError(
                f"{self.directory} is too long for UNIX socket paths; use a shorter directory"
            )

    def _write_users(self) -> None:
        lines = [f"{user}:{_ssha512(password)}::::::\n" for user, password in self.users.items()]
        tmp = self.users_file.with_suffix(".tmp")
        tmp.write_text("".join(lines))
        # Dovecot's auth process reads it as the `dovecot` user.
        os.chown(tmp, 0, pwd.getpwnam("dovecot").pw_gid)
        tmp.chmod(0o640)
        # Dovecot re-reads a passwd-file when its mtime changes: make sure it always does.
        self._users_mtime = max(int(time.time()), self._users_mtime + 1)
        os.utime(tmp, (self._users_mtime, self._users_mtime))
        os.replace(tmp, self.users_file)

    def _wait_for_auth(self, user: str, password: str, timeout: float = 10.0) -> None:
        # Dovecot stats a passwd-file at most once a second: wait until both the passdb and
        # the userdb (LMTP delivery) see the change, so that add_user() is synchronous.
        deadline = time.monotonic() + timeout
        checks = (["auth", "test", user, password], ["user", user])
        for args in checks:
            while True:
                result = subprocess.run(
                    ["doveadm", "-c", str(self.dovecot_config), *args],
                    env=self._env(),
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
                if result.returncode == 0:
                    break
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"Dovecot does not accept {user} after {timeout}s: "
                        f"{result.stdout}{result.stderr}"
                    )
                time.sleep(0.1)

    def _write_dovecot_config(self) -> None:
        mail = pwd.getpwnam(_MAIL_ACCOUNT)
        certs = self.certs
        dh = "/usr/share/dovecot/dh.pem"
        ssl_dh = f"ssl_dh = <{dh}\n" if os.path.exists(dh) else ""
        oauth2_mechanisms = passwd_mechanisms = oauth2_passdb = ""
        if self.oauth2_introspection_url:
            oauth2_args = self.dovecot_config.with_name("dovecot-oauth2.conf.ext")
            oauth2_args.write_text(
                "introspection_mode = post\n"
                f"introspection_url = {self.oauth2_introspection_url}\n"
                "force_introspection = yes\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
            )
            oauth2_mechanisms = " xoauth2 oauthbearer"
            passwd_mechanisms = "\n  mechanisms = plain login"
            oauth2_passdb = (
                "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {oauth2_args}\n}}\n"
            )
        config = f"""\
# Generated by tests/harness/mailservers.py -- private test instance, loopback only.
instance_name = postroom-{self.ports["imap"]}
base_dir = {self.dovecot_base_dir}
state_dir = {self.directory / "dovecot" / "state"}
listen = {self.host}
protocols = imap lmtp
log_path = {self.dovecot_log}
auth_verbose = yes
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = {mail.pw_uid}
first_valid_gid = {mail.pw_gid}
mail_uid = {mail.pw_uid}
mail_gid = {mail.pw_gid}
mail_location = maildir:~/Maildir
mail_fsync = never
mail_max_userip_connections = 200
shutdown_clients = yes

# Loopback clients count as "secure" to Dovecot (client IP == server IP), so these two do
# not stop plaintext LOGIN before STARTTLS on 127.0.0.1. They still document the intent.
ssl = required
disable_plaintext_auth = yes
ssl_cert = <{certs.valid.cert}
ssl_key = <{certs.valid.key}
ssl_min_protocol = TLSv1.2
{ssl_dh}
auth_mechanisms = plain login{oauth2_mechanisms}
# Dovecot answers failed logins on a 500 ms tick, so a wrong password costs <= 0.5 s.
auth_failure_delay = 0
auth_username_format = %Lu

passdb {{
  driver = passwd-file
  args = scheme=SSHA512 {self.users_file}{passwd_mechanisms}
}}
{oauth2_passdb}userdb {{
  driver = passwd-file
  args = {self.users_file}
  default_fields = uid={mail.pw_uid} gid={mail.pw_gid} home={self.mail_root}/%d/%n
}}

namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \\Drafts
    auto = create
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = create
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = create
  }}
}}

service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.ports["imap"]}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.ports["imaps"]}
    ssl = yes
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    user = postfix
    group = postfix
    mode = 0600
  }}
}}
# No "auth penalty": repeated failures from one IP (all tests are 127.0.0.1) would otherwise
# delay every later failure by up to 15 s. mode = 0 drops the listener, which disables it.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  unix_listener auth-postfix {{
    user = postfix
    group = postfix
    mode = 0600
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@{DOMAIN}
}}
"""
        self.dovecot_config.write_text(config)

    def _write_postfix_config(self) -> None:
        etc = self.postfix_config_dir
        certs = self.certs
        sender_access = etc / "sender_access"
        recipient_access = etc / "recipient_access"
        sender_access.write_text(f"{BLOCKED_SENDER} 553 5.7.1 Sender blocked by the test server\n")
        recipient_access.write_text(
            f"{REJECTED_RECIPIENT} 550 5.1.1 Mailbox unavailable (test rejection)\n"
        )
        # Dovecot 2.3's LMTP does not offer SMTPUTF8, so Postfix bounces a UTF-8 mailbox
        # it would hand over: that one mailbox is delivered by Postfix's own virtual(8)
        # agent into the same Maildir layout (maildir_of()).
        transport = etc / "transport"
        transport.write_text(f"{UTF8_MAILBOX} virtual:\n")
        utf8_maildir = etc / "utf8_maildir"
        local, _, domain = UTF8_MAILBOX.partition("@")
        utf8_maildir.write_text(f"{UTF8_MAILBOX} {domain}/{local}/Maildir/\n")
        sender_logins = etc / "sender_logins"
        sender_logins.write_text("".join(f"{user} {user}\n" for user in self.users))
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.postfix_queue_dir),
            "data_directory": str(self.postfix_data_dir),
            "mail_owner": "postfix",
            "setgid_group": _POSTDROP_GROUP,
            "maillog_file": str(self.postfix_log),
            "maillog_file_prefixes": str(self.logs_dir),
            "myhostname": f"mail.{DOMAIN}",
            "mydomain": DOMAIN,
            "myorigin": "$mydomain",
            "inet_interfaces": self.host,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "mydestination": "",
            "relay_domains": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
            "append_dot_mydomain": "no",
            "readme_directory": "no",
            "recipient_delimiter": "+",
            "disable_vrfy_command": "yes",
            # Only LMTP into Dovecot: nothing may ever leave the machine.
            "virtual_mailbox_domains": DOMAIN,
            "virtual_transport": f"lmtp:unix:{self.lmtp_socket}",
            "transport_maps": f"texthash:{transport}",
            "default_transport": "error:outbound mail is disabled in the postroom test harness",
            "relay_transport": "error:outbound mail is disabled in the postroom test harness",
            "local_transport": "error:local delivery is disabled in the postroom test harness",
            "smtpd_peername_lookup": "no",
            # Tests must not wait for retries.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "5s",
            "delay_warning_time": "0h",
            "in_flow_delay": "0",
            "smtpd_error_sleep_time": "0s",
            "smtpd_soft_error_limit": "100",
            "smtpd_hard_error_limit": "200",
            # Rejections happen at the command they are about (sender at MAIL FROM).
            "smtpd_delay_reject": "no",
            "smtpd_helo_required": "no",
            "smtpd_client_restrictions": "",
            "smtpd_helo_restrictions": "",
            "smtpd_sender_restrictions": f"check_sender_access texthash:{sender_access}",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
            "smtpd_recipient_restrictions": f"check_recipient_access texthash:{recipient_access}",
            "submission_relay_restrictions": "permit_sasl_authenticated, reject",
            # TLS: the valid CA-signed certificate unless a service overrides it.
            "smtpd_tls_cert_file": certs.valid.cert,
            "smtpd_tls_key_file": certs.valid.key,
            "smtpd_tls_security_level": "may",
            "smtpd_tls_auth_only": "yes",
            "smtpd_tls_loglevel": "1",
            "smtpd_tls_protocols": ">=TLSv1.2",
            "smtpd_tls_mandatory_protocols": ">=TLSv1.2",
            "smtpd_tls_received_header": "yes",
            # SASL through Dovecot's auth service; enabled per service below.
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": str(self.auth_socket),
            "smtpd_sasl_auth_enable": "no",
            "smtpd_sasl_security_options": "noanonymous",
            "smtpd_sasl_tls_security_options": "noanonymous",
            "smtpd_banner": "$myhostname ESMTP postroom test server",
        }
        (etc / "main.cf").write_text(
            "# Generated by tests/harness/mailservers.py -- private test instance.\n"
            + "".join(f"{key} = {value}\n" for key, value in main.items())
        )

        def smtpd(port: str, *options: str) -> str:
            lines = [f"{self.host}:{self.ports[port]} inet n - n - - smtpd"]
            lines.append(f"  -o syslog_name=postfix/{port}")
            lines.extend(f"  -o {option}" for option in options)
            return "\n".join(lines) + "\n"

        authenticated = (
            "smtpd_sasl_auth_enable=yes",
            "smtpd_relay_restrictions=$submission_relay_restrictions",
        )
        implicit_tls = ("smtpd_tls_wrappermode=yes", "smtpd_tls_security_level=encrypt")

        def with_cert(port: str, cert: str, key: str) -> str:
            return smtpd(
                port,
                *implicit_tls,
                *authenticated,
                f"smtpd_tls_cert_file={cert}",
                f"smtpd_tls_key_file={key}",
            )

        services = [
            smtpd("submission", "smtpd_tls_security_level=encrypt", *authenticated),
            smtpd("submissions", *implicit_tls, *authenticated),
            smtpd("plain", "smtpd_tls_security_level=none", "smtpd_sasl_auth_enable=no"),
            with_cert("smtps_selfsigned", certs.self_signed.cert, certs.self_signed.key),
            with_cert("smtps_expired", certs.expired.cert, certs.expired.key),
            with_cert("smtps_wronghost", certs.wrong_host.cert, certs.wrong_host.key),
            smtpd(
                "submission_owned",
                "smtpd_tls_security_level=encrypt",
                *authenticated,
                "smtpd_delay_reject=yes",
                f"smtpd_sender_login_maps=texthash:{sender_logins}",
                "smtpd_sender_restrictions=reject_sender_login_mismatch",
            ),
        ]
        mail = pwd.getpwnam(_MAIL_ACCOUNT)
        # the virtual(8) settings only for its own service: smtpd's recipient checks keep
        # the (empty) main.cf virtual_mailbox_maps, which accepts every local address
        services.append(
            "virtual unix - n n - - virtual\n"
            f"  -o virtual_mailbox_base={self.mail_root}\n"
            f"  -o virtual_mailbox_maps=texthash:{utf8_maildir}\n"
            f"  -o virtual_uid_maps=static:{mail.pw_uid}\n"
            f"  -o virtual_gid_maps=static:{mail.pw_gid}\n"
            f"  -o virtual_minimum_uid={mail.pw_uid}\n"
        )
        # No smtp/relay/local services at all: mail can only go to Dovecot via LMTP, or
        # (the UTF-8 mailbox) to a Maildir here.
        internal = """\
pickup     unix  n  -  n  60    1  pickup
cleanup    unix  n  -  n  -     0  cleanup
qmgr       unix  n  -  n  300   1  qmgr
tlsmgr     unix  -  -  n  1000? 1  tlsmgr
rewrite    unix  -  -  n  -     -  trivial-rewrite
bounce     unix  -  -  n  -     0  bounce
defer      unix  -  -  n  -     0  bounce
trace      unix  -  -  n  -     0  bounce
verify     unix  -  -  n  -     1  verify
flush      unix  n  -  n  1000? 0  flush
proxymap   unix  -  -  n  -     -  proxymap
proxywrite unix  -  -  n  -     1  proxymap
showq      unix  n  -  n  -     -  showq
error      unix  -  -  n  -     -  error
retry      unix  -  -  n  -     -  error
discard    unix  -  -  n  -     -  discard
lmtp       unix  -  -  n  -     -  lmtp
anvil      unix  -  -  n  -     1  anvil
scache     unix  -  -  n  -     1  scache
postlog    unix-dgram n  -  n  -  1  postlogd
"""
        (etc / "master.cf").write_text(
            "# Generated by tests/harness/mailservers.py -- private test instance.\n"
            + "".join(services)
            + internal
        )
        # Postfix re-reads a main.cf/master.cf modified in the last second, 300 ms apart,
        # until it is older ("let it settle down"): 2+ s lost at every start. Backdate them.
        past = time.time() - 60
        for path in etc.iterdir():
            os.utime(path, (past, past))

    def _postfix_master(self) -> str | None:
        for directory in _POSTFIX_DAEMON_DIRS:
            if os.access(os.path.join(directory, "master"), os.X_OK):
                return os.path.join(directory, "master")
        # postconf also pays the /dev/log retries: only ask it on unusual layouts.
        try:
            daemon_directory = subprocess.run(
                ["postconf", "-c", str(self.postfix_config_dir), "-h", "daemon_directory"],
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
        master = os.path.join(daemon_directory, "master")
        return master if os.access(master, os.X_OK) else None

    def _create_postfix_queue(self) -> bool:
        """Create the queue and data directories like ``post-install create-missing`` would.

        ``postfix start`` otherwise runs its integrity checks (``post-install``, ``find``
        over the system directories), which take ~2.5 s. With the directories in place the
        ``quick-start`` marker makes it skip them. Returns False (full checks) if Postfix's
        ``postfix-files`` list can't be read.
        """
        try:
            listing = Path("/etc/postfix/postfix-files").read_text()
        except OSError:
            return False
        values = {
            "$queue_directory": str(self.postfix_queue_dir),
            "$data_directory": str(self.postfix_data_dir),
            "$mail_owner": "postfix",
            "$setgid_group": _POSTDROP_GROUP,
        }
        created = 0
        for line in listing.splitlines():
            fields = line.split(":")
            if len(fields) < 5 or fields[1] != "d":
                continue
            prefix = fields[0].split("/", 1)[0]
            if prefix not in ("$queue_directory", "$data_directory"):
                continue
            path = Path(fields[0].replace(prefix, values[prefix], 1))
            owner = pwd.getpwnam(values.get(fields[2], fields[2]))
            gid = owner.pw_gid if fields[3] == "-" else grp.getgrnam(values[fields[3]]).gr_gid
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, owner.pw_uid, gid)
            path.chmod(int(fields[4], 8))
            created += 1
        if created < 10:  # not the format we know: let Postfix do it
            return False
        (self.postfix_queue_dir / "quick-start").touch()
        return True

    def _launch(self) -> None:
        # Both commands daemonize: their output goes to files, because a pipe inherited by
        # the daemons would never reach EOF.
        env = self._env()
        postfix_start = ["postfix", "-c", str(self.postfix_config_dir), "start"]
        master = self._postfix_master()
        if master is not None and self._create_postfix_queue():
            # What `postfix start` ends with, minus the shell script around it.
            postfix_start = [master, "-c", str(self.postfix_config_dir), "-w"]
        commands = {
            "postfix": postfix_start,
            "dovecot": ["dovecot", "-c", str(self.dovecot_config)],
        }
        procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        for name, argv in commands.items():
            out = self.logs_dir / f"{name}-start.out"
            with out.open("wb") as fh:
                procs[name] = (
                    subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT),
                    out,
                )
        failures = []
        for name, (proc, out) in procs.items():
            try:
                proc.wait(timeout=self.startup_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                failures.append(f"`{name}` start timed out:\n{_tail(out, 20)}")
                continue
            if proc.returncode != 0:
                failures.append(f"`{name}` start exited {proc.returncode}:\n{_tail(out, 20)}")
        if failures:
            raise HarnessStartError("\n".join(failures) + "\n" + self.log_tail())

    def _port_ready(self, name: str, port: int) -> bool:
        """TCP connect; on the cleartext ports also wait for the server's greeting."""
        greeting = _GREETINGS.get(name)
        try:
            with socket.create_connection((self.host, port), timeout=5) as sock:
                if greeting is None:
                    return True
                data = b""
                while b"\n" not in data:
                    chunk = sock.recv(512)
                    if not chunk:
                        return False
                    data += chunk
                return data.startswith(greeting)
        except OSError:
            return False

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        pending = dict(self.ports)
        sockets = [self.auth_socket, self.lmtp_socket]
        while pending or sockets:
            for name, port in list(pending.items()):
                if self._port_ready(name, port):
                    del pending[name]
            sockets = [path for path in sockets if not path.exists()]
            if not (pending or sockets):
                return
            if time.monotonic() >= deadline:
                waiting = [f"{name} ({port})" for name, port in pending.items()]
                waiting += [str(path) for path in sockets]
                raise HarnessStartError(
                    f"mail servers not ready after {self.startup_timeout}s; still waiting for: "
                    + ", ".join(waiting)
                    + "\n"
                    + self.log_tail()
                )
            time.sleep(0.02)
