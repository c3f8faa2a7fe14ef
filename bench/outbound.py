"""Outbound speed, measured side by side in one run against Postfix's C `smtp-sink`.

postroom (send() into the SQLite outbox while a running `postroom worker` delivers) is
compared with plain smtplib as naive code uses it (a new connection per message) and as
Django uses it (one reused connection), each building its messages the way it would, and
with Postfix's C load generator `smtp-source` (8 sessions, connections reused, one fixed
message it never builds): the ceiling for a client on this machine.

    python bench/outbound.py [--messages N] [--runs K] [--json]

``--runs K`` repeats every measure K times, side by side, and reports the medians: the
speed of a shared machine drifts from minute to minute.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import multiprocessing
import os
import resource
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

from postroom import Postroom
from postroom.outbox.service import SendRequest
from postroom.settings import Settings

T = TypeVar("T")

BODY = ("Run 'nightly-regression' finished: 412 passed, 3 failed, 7 skipped.\n" * 28)[:2000]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(exe).exists():
        sys.exit("smtp-sink not found: install Debian's postfix package (make test does)")
    args = [exe, "-c", "-4"]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]
    proc = subprocess.Popen([*args, f"127.0.0.1:{port}", "1024"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    sys.exit("smtp-sink did not start")


def build(i: int) -> EmailMessage:
    m = EmailMessage()
    m["From"] = "Robot <robot@bench.test>"
    m["To"] = f"user{i}@bench.test"
    m["Subject"] = f"Run {i} finished"
    m.set_content(BODY)
    return m


def smtp_source(port: int, n: int) -> float | None:
    """Postfix's C ``smtp-source``: as many sessions as the postroom profile's connections,
    each reusing its connection (``-d``), a message of the same size. None when missing."""
    exe = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not Path(exe).exists():
        return None
    args = [exe, "-4", "-d", "-s", "8", "-l", str(len(BODY) + 300), "-m", str(n)]
    args += ["-f", "robot@bench.test", "-t", "user@bench.test", f"127.0.0.1:{port}"]
    started = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return n / (time.perf_counter() - started)


def settle() -> None:
    """Let the machine finish the last phase's work before the next one is timed: the
    kernel writes the previous phase's database files out in the background, and that
    would otherwise be counted against whatever runs next."""
    gc.collect()
    os.sync()
    time.sleep(0.5)


@contextlib.contextmanager
def fresh_sink() -> Iterator[int]:
    """A new ``smtp-sink`` for one timed phase, on a settled machine: every contender
    starts with the same idle sink (one that has served thousands of connections
    answers more slowly)."""
    settle()
    port = free_port()
    sink = start_sink(port)
    try:
        yield port
    finally:
        sink.terminate()
        sink.wait(5)


def smtplib_new_connection(port: int, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        with smtplib.SMTP("127.0.0.1", port) as s:
            s.send_message(build(i))
    return n / (time.perf_counter() - started)


def smtplib_reused(port: int, n: int) -> float:
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as s:
        for i in range(n):
            s.send_message(build(i))
    return n / (time.perf_counter() - started)


def message(i: int) -> dict[str, object]:
    return {"to": [f"user{i}@bench.test"], "subject": f"Run {i} finished", "text": BODY}


def end_to_end(port: int, n: int, data: Path) -> tuple[float, float]:
    """A running `postroom worker` process (as deployed); the clock runs from the first
    enqueue until the sink has accepted all ``n`` messages. Returns msgs/s and peak RSS."""
    app = Postroom.open(settings=Settings(data_dir=data))
    app.profiles.create(
        {
            "name": "bench",
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "auth": "none"},
            "sender": {"from_address": "robot@bench.test", "from_name": "Robot"},
            "max_connections": 8,
        }
    )
    env = {**os.environ, "POSTROOM_DATA_DIR": str(data)}
    exe = str(Path(sys.executable).parent / "postroom")
    worker = subprocess.Popen([exe, "worker"], env=env, stderr=subprocess.PIPE, text=True)
    assert worker.stderr is not None
    worker.stderr.readline()  # "postroom worker … started": it is polling now
    batch = [SendRequest(message(i), profile="bench") for i in range(n)]
    started = time.perf_counter()
    for k in range(0, n, 500):
        app.send_many(batch[k : k + 500])
    # Done when nothing is due or being sent. Both counts read small indexes; counting
    # every message by status (counts()) costs milliseconds per poll as sent mail piles up,
    # taken from the cores the worker and the sink need.
    while app.outbox.queue.due_or_in_flight(within_s=0) > 0:
        if time.perf_counter() - started > 600:
            sys.exit("postroom did not deliver everything within 10 minutes")
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    sent = app.outbox.queue.counts().get("sent", 0)
    if sent != n:
        sys.exit(f"postroom sent {sent} of {n} messages; see `postroom outbox list`")
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    app.close()
    return n / elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def send_phases(n: int, data: Path) -> tuple[list[float], float]:
    """``send()`` latencies (ms), one durable commit per message (synchronous=FULL), then
    ``send_many`` msgs/s in batches of 500 (the caller's dicts are built beforehand)."""
    app = Postroom.open(settings=Settings(data_dir=data))
    app.profiles.create(
        {
            "name": "bench",  # no worker runs here: nothing is sent to this port
            "smtp": {"host": "127.0.0.1", "port": 25, "security": "none", "auth": "none"},
            "sender": {"from_address": "robot@bench.test", "from_name": "Robot"},
            "max_connections": 8,
        }
    )
    settle()
    latencies = []
    for i in range(min(n, 1000)):
        t = time.perf_counter()
        app.send(message(i), profile="bench")
        latencies.append((time.perf_counter() - t) * 1000)
    batch = [SendRequest(message(i), profile="bench") for i in range(n)]
    settle()
    started = time.perf_counter()
    for k in range(0, n, 500):
        app.send_many(batch[k : k + 500])
    many_rate = n / (time.perf_counter() - started)
    app.close()
    return latencies, many_rate


def isolated(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a fresh interpreter, as each baseline runs in its own process: no
    phase inherits another's heap, caches or collector state."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def postroom_run(n: int, workdir: Path) -> dict[str, float]:
    latencies, many_rate = isolated(send_phases, n, workdir / "data")
    with fresh_sink() as port:
        e2e_rate, rss_mb = isolated(end_to_end, port, n, workdir / "e2e")
    return {
        "postroom_msgs_per_s": e2e_rate,
        "send_p50_ms": statistics.median(latencies),
        "send_p99_ms": statistics.quantiles(latencies, n=100)[98],
        "send_many_msgs_per_s": many_rate,
        "worker_peak_rss_mb": rss_mb,
        "messages": float(n),
    }


def progress(text: str) -> None:
    """What is running now, on stderr (stdout stays the result, or the JSON)."""
    print(f"bench: {text}", file=sys.stderr, flush=True)


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` (to ``high``), else argparse's error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value

    return parse


def one_run(n: int) -> dict[str, Any]:
    """Every measure once, side by side: the three baselines, then postroom."""
    baseline_n = min(n, 2000)
    progress(f"smtplib, {baseline_n} messages with a new connection each, then reusing one")
    with fresh_sink() as port:
        new_conn = smtplib_new_connection(port, baseline_n)
    with fresh_sink() as port:
        reused = smtplib_reused(port, baseline_n)
    c_tool_n = max(n, 20000)
    progress(f"smtp-source, {c_tool_n} messages")
    with fresh_sink() as port:
        c_tool = smtp_source(port, c_tool_n)
    progress(f"postroom, {n} messages: send() latency, send_many, end to end")
    with tempfile.TemporaryDirectory() as tmp:
        result = postroom_run(n, Path(tmp))
    rate = result["postroom_msgs_per_s"]
    return {
        **result,
        "baselines": {
            "smtplib_new_connection": new_conn,
            "smtplib_reused_connection": reused,
            "smtp_source": c_tool,
        },
        "ratio_vs_smtplib_new_connection": rate / new_conn,
        "ratio_vs_smtplib_reused_connection": rate / reused,
        "ratio_vs_smtp_source": rate / c_tool if c_tool else None,
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each measure over the runs (each ratio taken within its own run, as
    the machine's speed drifts between runs); peak RSS is the highest. One run: itself."""
    if len(runs) == 1:
        return runs[0]

    def median(key: str, group: str | None = None) -> float | None:
        values = [(r[group] if group else r)[key] for r in runs]
        return None if None in values else statistics.median(values)

    out: dict[str, Any] = {
        key: median(key)
        for key in (
            "postroom_msgs_per_s", "send_p50_ms", "send_p99_ms", "send_many_msgs_per_s",
            "ratio_vs_smtplib_new_connection", "ratio_vs_smtplib_reused_connection",
            "ratio_vs_smtp_source",
        )
    }  # fmt: skip
    out["baselines"] = {name: median(name, "baselines") for name in runs[0]["baselines"]}
    out["worker_peak_rss_mb"] = max(r["worker_peak_rss_mb"] for r in runs)
    out["messages"] = runs[0]["messages"]
    out["runs"] = runs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # p99 needs a hundred sends
    parser.add_argument("--messages", type=whole_number(100), default=5000, help="at least 100")
    parser.add_argument(
        "--runs",
        type=whole_number(1, 20),
        default=1,
        help="repeat every measure, side by side, and report the medians (1 to 20)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = []
    for k in range(args.runs):
        if args.runs > 1:
            progress(f"run {k + 1} of {args.runs}")
        runs.append(one_run(args.messages))
    out = summary(runs)
    result = out
    new_conn = out["baselines"]["smtplib_new_connection"]
    reused = out["baselines"]["smtplib_reused_connection"]
    c_tool = out["baselines"]["smtp_source"]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"messages:                      {int(result['messages'])} of ~2 KB, into smtp-sink")
    if args.runs > 1:
        print(f"runs:                          {args.runs}, medians below (ratios within each run)")
    print(
        f"postroom end to end:           {result['postroom_msgs_per_s']:>9.0f} msg/s  (enqueue → 250, worker running)"
    )
    print(
        f"smtplib, new connection each:  {new_conn:>9.0f} msg/s   ratio {out['ratio_vs_smtplib_new_connection']:.2f}x"
    )
    print(
        f"smtplib, one reused connection:{reused:>9.0f} msg/s   ratio {out['ratio_vs_smtplib_reused_connection']:.2f}x"
    )
    if c_tool:
        print(
            f"smtp-source (C, 8 sessions):   {c_tool:>9.0f} msg/s   ratio {out['ratio_vs_smtp_source']:.2f}x"
        )
    else:
        print("smtp-source (C):               not installed (Debian's postfix package has it)")
    print(
        f"send() latency p50 / p99:      {result['send_p50_ms']:.2f} / {result['send_p99_ms']:.2f} ms (SQLite, synchronous=FULL)"
    )
    print(f"send_many:                     {result['send_many_msgs_per_s']:>9.0f} msg/s")
    print(f"worker peak RSS:               {result['worker_peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
