"""A private Cyrus IMAP 3 on loopback high ports, run from the unpacked Debian package.

Everything lives in one directory: ``imapd.conf``, ``cyrus.conf``, the SASL database
(``sasldb2``), the configuration directory (``lib/``), the mail spool (``spool/``) and the
sockets (``socket/lmtp`` takes LMTP deliveries, e.g. from the harness's Exim).

Ports (``CyrusServer.ports``), on ``127.0.0.1``:

    imap    IMAP with STARTTLS (PLAIN and LOGIN)
    imaps   IMAP over implicit TLS

Users sign in with their full address; they live in a private sasldb (``saslpasswd2 -f
FILE -u DOMAIN -c USER``), with ``virtdomains: userid`` and **no** ``defaultdomain`` (with
one, the SASL realm does not match and every login fails). Each user's INBOX is created at
their first login or first delivery (``autocreate_*``). ``idled`` runs, so IDLE reports new
mail at once (without it, only every ~60 s).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from . import unpacked
from .certs import HarnessCerts
from .mailservers import DEFAULT_USERS, HarnessStartError

CYRUS_USER = "cyrus"
CYRUS_GROUP = "mail"
BIN = "usr/lib/cyrus/bin"
PORT_NAMES = ("imap", "imaps")


def check_available() -> Path:
    unpacked.require(f"{BIN}/imapd", "cyrus-imapd", (CYRUS_USER,))
    return unpacked.require(f"{BIN}/master", "cyrus-common", (CYRUS_USER,))


def version() -> str:
    return unpacked.versions().get("cyrus-imapd", "unknown")


class CyrusServer:
    host = "127.0.0.1"

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        certs: HarnessCerts,
        users: Mapping[str, str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.directory = Path(directory or tempfile.mkdtemp(prefix="postroom-cyrus-")).resolve()
        self.certs = certs
        self.users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        self.startup_timeout = startup_timeout
        self.ports: dict[str, int] = {}
        self.imapd_conf = self.directory / "imapd.conf"
        self.cyrus_conf = self.directory / "cyrus.conf"
        self.sasldb = self.directory / "sasldb2"
        self.lmtp_socket = self.directory / "socket" / "lmtp"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def ca_pem(self) -> str:
        return self.certs.ca_pem

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> CyrusServer:
        master = check_available()
        cyrus = pwd.getpwnam(CYRUS_USER)
        gid = grp.getgrnam(CYRUS_GROUP).gr_gid
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        for sub in ("lib", "lib/proc", "lib/db", "lib/socket", "lib/log", "lib/user",
                    "lib/quota", "lib/sieve", "lib/msg", "spool", "socket", "tls", "log"):  # fmt: skip
            path = self.directory / sub
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, cyrus.pw_uid, gid)
            path.chmod(0o750 if sub != "socket" else 0o755)
        for name, source in (
            ("cert.pem", self.certs.valid.cert),
            ("key.pem", self.certs.valid.key),
        ):
            target = self.directory / "tls" / name
            shutil.copyfile(source, target)
            os.chown(target, cyrus.pw_uid, gid)
            target.chmod(0o600)
        self._write_users(cyrus.pw_uid, gid)
        self.ports = dict(zip(PORT_NAMES, unpacked.free_ports(len(PORT_NAMES)), strict=True))
        self._write_config(master.parent)
        env = dict(os.environ, LD_LIBRARY_PATH=unpacked.library_path())
        out = (self.directory / "log" / "master.out").open("wb")
        # -D: stay in the foreground (our child); -C/-M: our configuration, not /etc's
        self._proc = subprocess.Popen(
            [str(master), "-C", str(self.imapd_conf), "-M", str(self.cyrus_conf), "-D"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + self.startup_timeout
        while not (
            unpacked.wait_for_banner(self.host, self.ports["imap"], b"* OK")
            and self.lmtp_socket.exists()
        ):
            if self._proc.poll() is not None or time.monotonic() >= deadline:
                self.stop()
                raise HarnessStartError(
                    "Cyrus IMAP did not start:\n"
                    + (self.directory / "log" / "master.out").read_text(errors="replace")[-3000:]
                )
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
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

    def add_user(self, user: str, password: str) -> None:
        """A new mailbox user, effective at once (its INBOX is created at its first login
        or delivery)."""
        self.users[user] = password
        self._saslpasswd(user, password)

    def deliver(self, recipient: str, raw: bytes, sender: str = "sender@postroom.test") -> None:
        """Deliver over LMTP on the unix socket, as an MTA would."""
        with smtplib.LMTP(str(self.lmtp_socket), timeout=10) as lmtp:
            lmtp.sendmail(sender, [recipient], raw)

    def _saslpasswd(self, user: str, password: str) -> None:
        local, _, domain = user.partition("@")
        subprocess.run(
            [str(unpacked.root() / "usr/sbin/saslpasswd2"), "-f", str(self.sasldb), "-u",
             domain, "-p", "-c", local],
            input=password.encode(),
            env=dict(os.environ, LD_LIBRARY_PATH=unpacked.library_path()),
            check=True,
            capture_output=True,
            timeout=20,
        )  # fmt: skip

    def _write_users(self, uid: int, gid: int) -> None:
        for user, password in self.users.items():
            self._saslpasswd(user, password)
        os.chown(self.sasldb, uid, gid)
        self.sasldb.chmod(0o640)

    def _write_config(self, bindir: Path) -> None:
        d = self.directory
        self.imapd_conf.write_text(f"""\
# Generated by tests/harness/cyrus.py -- private test instance, loopback only.
configdirectory: {d / "lib"}
partition-default: {d / "spool"}
servername: cyrus.postroom.test
virtdomains: userid
unixhierarchysep: yes
altnamespace: no
admins: cyrus
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {self.sasldb}
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
tls_server_cert: {d / "tls" / "cert.pem"}
tls_server_key: {d / "tls" / "key.pem"}
tls_versions: tls1_2 tls1_3
lmtpsocket: {self.lmtp_socket}
idlesocket: {d / "socket" / "idle"}
notifysocket: {d / "socket" / "notify"}
autocreate_post: 1
autocreate_quota: 0
autocreate_inbox_folders: Sent | Trash
lmtp_downcase_rcpt: yes
syslog_prefix: postroom-cyrus
""")
        self.cyrus_conf.write_text(f"""\
# Generated by tests/harness/cyrus.py
START {{
  recover cmd="{bindir}/ctl_cyrusdb -C {self.imapd_conf} -r"
}}
SERVICES {{
  imap cmd="{bindir}/imapd -C {self.imapd_conf}" listen="{self.host}:{self.ports["imap"]}" prefork=1
  imaps cmd="{bindir}/imapd -C {self.imapd_conf} -s" listen="{self.host}:{self.ports["imaps"]}" prefork=0
  lmtpunix cmd="{bindir}/lmtpd -C {self.imapd_conf}" listen="{self.lmtp_socket}" prefork=0
}}
EVENTS {{
}}
DAEMON {{
  idled cmd="{bindir}/idled -C {self.imapd_conf}"
}}
""")
