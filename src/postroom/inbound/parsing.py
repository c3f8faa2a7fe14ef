"""Parsing inbound mail where a slow or huge message cannot stop anything else.

Python's email package and address regexes hold the GIL: parsed on a thread of the
``serve`` process, one crafted header could keep the web server, the delivery worker and
every other mailbox waiting for as long as the parse takes, and a thread cannot be
interrupted. So :class:`MessageParser` hands each message to a long-lived child process
(:mod:`postroom.inbound.parse_child`) and waits on a pipe, holding nothing:

- **time**: an answer not back within ``max_seconds`` (+1 s for the pipe) gets the child
  killed; the message is rejected with that reason and a fresh child takes the next one;
- **memory**: the child's address space is capped (``RLIMIT_AS``) at its start-up size
  plus ``max_memory_bytes``; running out rejects the message and the child is replaced;
- **parts, depth, header fields**: enforced inside the parse (:mod:`postroom.imap.parse`).

One child serves one runner (all its listeners, one message at a time); it starts with
the first message and stays, so a message costs a pipe round trip, not a process start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

from postroom.errors import PostroomError
from postroom.imap.parse import InboundMessage, Limits, Rejected
from postroom.inbound.bounces import Bounce, RecipientStatus

__all__ = ["MessageParser", "Parsed", "ParserUnavailable"]

log = logging.getLogger("postroom.inbound")

_HEADER = 8
_START_TIMEOUT_S = 60.0  # importing the parser's modules on a loaded machine
_PIPE_MARGIN_S = 1.0  # time beyond max_seconds for moving the answer through the pipe
# Starts the child without running postroom/__init__ (which imports the whole application:
# SQLAlchemy, FastAPI...): the parser needs only postroom.imap.parse and bounces. 0.3 s
# instead of 2 s, and a smaller process.
_BOOT = (
    "import importlib.util, sys\n"
    "spec = importlib.util.find_spec('postroom')\n"
    "if spec is not None:\n"
    "    sys.modules['postroom'] = importlib.util.module_from_spec(spec)\n"
    "from postroom.inbound.parse_child import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


class ParserUnavailable(PostroomError):
    """The parser process cannot be started (a broken installation, no processes left)."""


@dataclass(frozen=True)
class Parsed:
    """A parsed message and, when it is a delivery failure notice, its bounce."""

    message: InboundMessage
    bounce: Bounce | None


class _Stopped(Exception):
    """The child did not answer in time, or died: it has been killed and reaped."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MessageParser:
    """Parses messages in a child process within ``limits``; thread-safe, one at a time."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    async def parse(self, raw: bytes) -> Parsed | Rejected:
        """Parse ``raw`` without blocking the event loop. Raises ParserUnavailable."""
        return await asyncio.to_thread(self.parse_blocking, raw)

    def start(self) -> None:
        """Start the child now rather than with the first message. Raises ParserUnavailable."""
        with self._lock:
            self._running()

    def parse_blocking(self, raw: bytes) -> Parsed | Rejected:
        if len(raw) > self.limits.max_bytes:  # not worth a trip through the pipe
            return Rejected(f"larger than {self.limits.max_bytes} bytes ({len(raw)})")
        with self._lock:
            proc = self._running()
            try:
                return self._exchange(proc, raw)
            except _Stopped as stopped:
                return Rejected(stopped.reason)

    def close(self) -> None:
        """End the child (it exits when its input closes; killed if it does not)."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                _kill(proc)
            if proc.stdout is not None:
                proc.stdout.close()

    @property
    def pid(self) -> int | None:
        """The child's process id, while one runs (for tests and diagnostics)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    # -- the child --------------------------------------------------------------------------

    def _running(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return proc
        if proc is not None:
            self._discard(proc)
        limits = json.dumps(dataclasses.asdict(self.limits))
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, limits],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,  # not in the terminal's group: Ctrl+C is for us
            )
        except OSError as exc:
            raise ParserUnavailable(
                f"Cannot start the inbound parser process ({sys.executable}): {exc}"
            ) from None
        try:
            ready = _read(proc, 1, time.monotonic() + _START_TIMEOUT_S)
        except _Stopped:
            ready = b""
        if ready != b"R":
            self._discard(proc)
            raise ParserUnavailable(
                "The inbound parser process did not start within "
                f"{_START_TIMEOUT_S:g} s (try: {sys.executable} -m postroom.inbound.parse_child)."
            )
        self._proc = proc
        return proc

    def _discard(self, proc: subprocess.Popen[bytes]) -> None:
        _kill(proc)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if self._proc is proc:
            self._proc = None

    def _exchange(self, proc: subprocess.Popen[bytes], raw: bytes) -> Parsed | Rejected:
        limits = self.limits
        stdin = proc.stdin
        assert stdin is not None
        try:
            stdin.write(len(raw).to_bytes(_HEADER, "big") + raw)
            stdin.flush()
        except OSError:
            self._discard(proc)
            raise _Stopped(_died(proc)) from None
        deadline = time.monotonic() + limits.max_seconds + _PIPE_MARGIN_S
        try:
            size = int.from_bytes(_read(proc, _HEADER, deadline), "big")
            head: dict[str, Any] = json.loads(
                _read(proc, size, deadline).decode("utf-8", "surrogatepass")
            )
            if "rejected" in head:
                if head.get("exit"):
                    self._discard(proc)  # it ran out of memory: a fresh one takes the next
                return Rejected(str(head["rejected"]))
            message = InboundMessage.model_validate(head["message"])
            lengths: list[int] = head["contents"]
            for attachment, length in zip(message.attachments, lengths, strict=True):
                if length >= 0:
                    attachment.content = _read(proc, length, deadline)
        except _Stopped as stopped:
            self._discard(proc)
            if stopped.reason == "timeout":
                log.warning(
                    "inbound: a message took over %g s to parse; stopped", limits.max_seconds
                )
                raise _Stopped(
                    f"took longer than {limits.max_seconds:g} s to parse (the parser was stopped)"
                ) from None
            raise _Stopped(_died(proc)) from None
        return Parsed(message, _bounce(head.get("bounce")))


def _read(proc: subprocess.Popen[bytes], n: int, deadline: float) -> bytes:
    """Exactly ``n`` bytes from the child by ``deadline``; raises _Stopped."""
    stream: IO[bytes] | None = proc.stdout
    assert stream is not None
    fd = stream.fileno()
    chunks: list[bytes] = []
    missing = n
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while missing:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise _Stopped("timeout")
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            raise _Stopped("died")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not refused
        log.error("inbound: parser process %s did not die", proc.pid)


def _died(proc: subprocess.Popen[bytes]) -> str:
    code = proc.poll()
    how = f"exit code {code}" if code is not None and code >= 0 else f"signal {-(code or 0)}"
    return f"the parser process stopped while parsing it ({how}); out of memory?"


def _bounce(data: dict[str, Any] | None) -> Bounce | None:
    if not data:
        return None
    recipients = [RecipientStatus(**r) for r in data.get("recipients", [])]
    return Bounce(**{**data, "recipients": recipients})
