"""Running postroom's long-lived event loops (worker, serve, listeners).

uvloop, when installed (it is a dependency on Linux), halves the event loop's own cost
per message on the delivery path; elsewhere the standard loop is used. Why:
docs/decisions/0004-outbox-throughput.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run"]

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # not on this platform: the standard loop
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Like :func:`asyncio.run`, on uvloop when it is available."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
