"""Private proxies on loopback for the proxy tests: Dante (SOCKS5) and tinyproxy (HTTP
CONNECT), unpacked by scripts/install-system-deps.sh into the private test-server tree and
started with their own configurations on free high ports. Both only let clients from
127.0.0.0/8 reach 127.0.0.0/8: nothing leaves the machine even through them.

Instances: ``socks`` (no sign-in), ``http`` (no sign-in), ``http_auth`` (Basic, user
``proxyuser`` / ``PROXY_PASSWORD``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PRIVATE = Path(os.environ.get("POSTROOM_TEST_SERVERS_DIR", "/opt/postroom-test-servers"))
DANTED = PRIVATE / "root" / "usr" / "sbin" / "danted"
TINYPROXY = PRIVATE / "root" / "usr" / "bin" / "tinyproxy"
PROXY_USER = "proxyuser"
PROXY_PASSWORD = "proxy-CANARY-pw-41"


def available() -> str | None:
    """None when both proxies can run, else why not."""
    for binary in (DANTED, TINYPROXY):
        if not binary.exists():
            return f"{binary} is missing (run scripts/install-system-deps.sh as root)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"proxy exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(
        f"proxy on port {port} did not start: {log.read_text(errors='replace')[-2000:]}"
    )


@dataclass
class Proxies:
    directory: Path
    ports: dict[str, int] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)

    def start_dante(self, name: str) -> None:
        port = _free_port()
        log = self.directory / f"{name}.log"
        config = self.directory / f"{name}.conf"
        config.write_text(
            f"""logoutput: {log}
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
socksmethod: none
clientmethod: none
user.unprivileged: nobody
client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}
socks pass {{ from: 127.0.0.0/8 to: 127.0.0.0/8 command: connect }}
socks block {{ from: 0.0.0.0/0 to: 0.0.0.0/0 }}
"""
        )
        pid_file = self.directory / f"{name}.pid"
        process = subprocess.Popen(
            [str(DANTED), "-f", str(config), "-p", str(pid_file), "-N", "1"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.directory / f"{name}.stderr", "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        self.processes.append(process)
        log.touch()
        _wait_listening(port, process, self.directory / f"{name}.stderr")
        self.ports[name] = port
        self.logs[name] = log

    def start_tinyproxy(self, name: str, *, auth: bool) -> None:
        port = _free_port()
        log = self.directory / f"{name}.log"
        config = self.directory / f"{name}.conf"
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            f'LogFile "{log}"',
            "LogLevel Info",
            "MaxClients 20",
            "Allow 127.0.0.0/8",
            "DisableViaHeader Yes",
            # no ConnectPort line: CONNECT to any port (the test servers use high ports)
        ]
        if auth:
            lines.append(f"BasicAuth {PROXY_USER} {PROXY_PASSWORD}")
        config.write_text("\n".join(lines) + "\n")
        log.touch()
        os.chmod(self.directory, 0o755)
        for path in (config, log):
            os.chmod(path, 0o666)
        process = subprocess.Popen(
            [str(TINYPROXY), "-d", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.directory / f"{name}.stderr", "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        self.processes.append(process)
        _wait_listening(port, process, self.directory / f"{name}.stderr")
        self.ports[name] = port
        self.logs[name] = log

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


@contextmanager
def proxies() -> Iterator[Proxies]:
    directory = Path(tempfile.mkdtemp(prefix="postroom-proxies-"))
    running = Proxies(directory)
    try:
        running.start_dante("socks")
        running.start_tinyproxy("http", auth=False)
        running.start_tinyproxy("http_auth", auth=True)
        yield running
    finally:
        running.stop()
        shutil.rmtree(directory, ignore_errors=True)
