"""The parser process: reads messages on stdin, writes parsed messages on stdout.

Started by :class:`postroom.inbound.parsing.MessageParser` as
``python -m postroom.inbound.parse_child LIMITS_JSON``. Mail is hostile input and Python's
email package (and address regexes) hold the GIL: parsed here, a slow message can only
slow this process, which the parent kills when the time limit passes, and whose address
space is capped (``RLIMIT_AS``) at its size after start-up plus ``max_memory_bytes``.

Frames (all lengths 8-byte big-endian): request ``len, raw``; answer ``len, JSON`` then the
attachment contents the JSON announces. The JSON is ``{"rejected": reason}`` or
``{"message": ..., "contents": [len or -1, ...], "bounce": ... or null}``; ``"exit": true``
says this process ends after the answer (it ran out of memory) and must be replaced.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from typing import Any, BinaryIO

from postroom.imap.parse import Limits, Rejected, parse_inbound
from postroom.inbound.bounces import detect_bounce

__all__ = ["answer", "main"]

_HEADER = 8


def _cap_memory(extra: int) -> None:
    """Cap the address space at what this process uses now plus ``extra`` (Linux)."""
    try:
        import resource

        with open("/proc/self/status", encoding="ascii") as status:
            vm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = vm + extra
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (OSError, ValueError, StopIteration, ImportError):
        pass  # no /proc or no RLIMIT_AS here: the time limit still holds


def answer(raw: bytes, limits: Limits) -> tuple[dict[str, Any], list[bytes]]:
    """Parse ``raw``: the JSON answer and the attachment contents that follow it."""
    try:
        parsed = parse_inbound(raw, limits=limits)
        if isinstance(parsed, Rejected):
            return {"rejected": parsed.reason}, []
        try:
            bounce = detect_bounce(raw)
        except (ValueError, TypeError, LookupError, IndexError, AttributeError):
            bounce = None  # a malformed notice is simply not recognised as a bounce
    except MemoryError:
        mib = limits.max_memory_bytes // (1024 * 1024)
        return {"rejected": f"needs more than {mib} MiB of memory to parse", "exit": True}, []
    except Exception as exc:  # noqa: BLE001 - any failure on hostile input is that message's
        return {"rejected": f"cannot be parsed ({type(exc).__name__})"}, []
    contents = [
        a.content if a.stored and a.content is not None else None for a in parsed.attachments
    ]
    head = {
        "message": parsed.model_dump(mode="json"),
        "contents": [len(c) if c is not None else -1 for c in contents],
        "bounce": dataclasses.asdict(bounce) if bounce is not None else None,
    }
    return head, [c for c in contents if c is not None]


def _read(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    return data if len(data) == n else None


def main(argv: list[str]) -> int:
    # Ctrl+C in a terminal and a service manager's SIGTERM reach every process of the group:
    # dying of them mid-parse would make the parent quarantine a good message as "the parser
    # stopped". This process ends when the parent closes its input (or exits), or is killed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    limits = Limits(**json.loads(argv[0]))
    # the protocol owns fd 1; anything printed by accident goes to stderr instead
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    stdin = sys.stdin.buffer
    _cap_memory(limits.max_memory_bytes)
    out.write(b"R")
    out.flush()
    while True:
        size = _read(stdin, _HEADER)
        if size is None:
            return 0  # the parent closed the pipe: done
        raw = _read(stdin, int.from_bytes(size, "big"))
        if raw is None:
            return 0
        head, contents = answer(raw, limits)
        body = json.dumps(head, ensure_ascii=False).encode("utf-8", "surrogatepass")
        out.write(len(body).to_bytes(_HEADER, "big") + body)
        for content in contents:
            out.write(content)
        out.flush()
        if head.get("exit"):
            return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
