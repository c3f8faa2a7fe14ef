"""Shared helpers for the servers the harness runs from unpacked Debian packages.

Exim and Cyrus IMAP conflict with Postfix as installed packages, so
``scripts/install-system-deps.sh`` downloads their ``.deb`` files and unpacks them
(``dpkg -x``) into a private directory (``/opt/postroom-test-servers`` unless
``POSTROOM_TEST_SERVERS_DIR`` says otherwise). The binaries run from there, with the
unpacked shared libraries on ``LD_LIBRARY_PATH`` and a configuration of their own.
"""

from __future__ import annotations

import os
import pwd
import socket
from pathlib import Path

from .mailservers import HarnessUnavailable

DIR_ENV = "POSTROOM_TEST_SERVERS_DIR"
DEFAULT_DIR = "/opt/postroom-test-servers"


def servers_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


def root() -> Path:
    """Where the packages were unpacked (the equivalent of ``/``)."""
    return servers_dir() / "root"


def library_path() -> str:
    r = root()
    return os.pathsep.join(str(r / p) for p in ("usr/lib/x86_64-linux-gnu", "usr/lib"))


def versions() -> dict[str, str]:
    """Package -> Debian version of what was unpacked (written by the install script)."""
    try:
        text = (servers_dir() / "VERSIONS").read_text()
    except OSError:
        return {}
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def require(binary: str, package: str, users: tuple[str, ...]) -> Path:
    """The path of an unpacked binary; :class:`HarnessUnavailable` when it can't run here."""
    path = root() / binary
    if not (servers_dir() / ".complete").exists() or not os.access(path, os.X_OK):
        raise HarnessUnavailable(
            f"{package} is not unpacked in {servers_dir()} "
            "(scripts/install-system-deps.sh, as root, unpacks it)",
            binary=Path(binary).name,
        )
    for user in users:
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise HarnessUnavailable(
                f"system user `{user}` is missing (scripts/install-system-deps.sh creates it)"
            ) from None
    if os.geteuid() != 0:
        raise HarnessUnavailable(f"{package} is started as root by the harness")
    return path


def free_ports(count: int) -> list[int]:
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_for_banner(host: str, port: int, prefix: bytes, *, timeout: float = 5.0) -> bool:
    """Connect and read the first line; True when it starts with ``prefix``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            data = b""
            while b"\n" not in data:
                chunk = sock.recv(512)
                if not chunk:
                    return False
                data += chunk
            return data.startswith(prefix)
    except OSError:
        return False
