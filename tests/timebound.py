"""Run a pure function in a child process and hold it to a CPU-time bound.

A regex that backtracks holds the GIL for minutes and cannot be interrupted from Python,
so a test of "linear time" must not run the function in its own process: the child is
killed once the bound is clearly blown, and the test fails instead of hanging.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any


def _child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    start = time.process_time()
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - refusing the input is fine; only the time matters
        pass
    conn.send(time.process_time() - start)


def cpu_seconds(fn: Callable[..., Any], *args: Any, bound: float) -> float:
    """CPU seconds ``fn(*args)`` took (exceptions ignored); fails the test when it takes
    more than ``bound``, killing the child after ``10 × bound`` of wall time."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args), daemon=True)
    proc.start()
    try:
        if not parent.poll(max(10 * bound, 5.0)):
            raise AssertionError(
                f"{getattr(fn, '__name__', fn)} did not finish: far over {bound} s"
            )
        took = float(parent.recv())
    finally:
        proc.kill()
        proc.join(10)
    assert took <= bound, f"{getattr(fn, '__name__', fn)} took {took:.2f} s CPU (bound {bound} s)"
    return took


def _measured_child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.process_time()
    try:
        fn(*args)
        outcome = ""
    except Exception as exc:  # noqa: BLE001 - the caller checks what was raised
        outcome = f"{type(exc).__name__}: {exc}"
    took = time.process_time() - start
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    conn.send((outcome, took, grown))


def run_bounded(fn: Callable[..., Any], *args: Any, wall: float) -> tuple[str, float, float]:
    """``fn(*args)`` in a child process: what it raised (``""`` if nothing), its CPU
    seconds, and how much its peak resident memory grew in MB. Fails the test when it
    has not finished after ``wall`` seconds (the child is killed)."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_measured_child, args=(child, fn, args), daemon=True)
    proc.start()
    try:
        if not parent.poll(wall):
            raise AssertionError(f"did not finish within {wall} s")
        outcome, took, grown = parent.recv()
    finally:
        proc.kill()
        proc.join(10)
    return str(outcome), float(took), float(grown)
