"""REST send speed, side by side in one run with the Python API on the same store.

`postroom serve` runs as deployed (its worker delivering into Postfix's C `smtp-sink`);
C concurrent HTTP clients with a `sender` API key post single messages (C = 1, 16, 64),
then batches of 100; Python `send()` and `send_many` run in this process on the same
store. Then `GET /api/v1/messages/{id}` and `/healthz`, and a soak: 64 clients for
``--soak`` seconds, the worker's delivery rate beside the API's. At the end every
accepted id must be in the outbox exactly once and sent.

    python bench/rest.py [--backend sqlite|postgresql|both] [--runs K] [--json] [--quick]

The HTTP clients are a small keep-alive HTTP/1.1 client on asyncio (an HTTP library
would cost more CPU per request than the server, on the same two cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from outbound import BODY, free_port, progress, settle, start_sink, whole_number  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from postroom import Postroom  # noqa: E402
from postroom.outbox.service import SendRequest  # noqa: E402
from postroom.settings import Settings  # noqa: E402

PG_URL = os.environ.get("POSTROOM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TIMEOUT_S = 30.0


def message(i: int, tag: str) -> dict[str, Any]:
    return {
        "to": [f"user{i}@bench.test"],
        "subject": f"{tag} {i}",
        "text": BODY,
        "profile": "bench",
    }


def plain(i: int, tag: str) -> dict[str, Any]:
    return {"to": [f"user{i}@bench.test"], "subject": f"{tag} {i}", "text": BODY}


class Http:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.auth = f"Authorization: Bearer {key}\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(data)}\r\n"
        ctype = b"Content-Type: application/json\r\n" if body is not None else b""
        self.writer.write(head.encode() + ctype + self.auth + b"\r\n" + data)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        return status, (json.loads(payload) if payload else None)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def pct(values: list[float], q: int) -> float:
    if not values:
        return 0.0
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def stats(latencies: list[float], count: int, elapsed: float) -> dict[str, Any]:
    return {
        "msgs_per_s": count / elapsed if elapsed else 0.0,
        "p50_ms": statistics.median(latencies) if latencies else 0.0,
        "p99_ms": pct(latencies, 99),
        "max_ms": max(latencies, default=0.0),
    }


async def post_load(
    port: int, key: str, clients: int, *, total: int | None, seconds: float | None,
    batch: int, tag: str, accepted: list[int],
) -> dict[str, Any]:  # fmt: skip
    """``clients`` connections posting until ``total`` messages (or ``seconds``) are done."""
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    sent = 0
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds if seconds else None

    async def client() -> None:
        nonlocal sent
        http = Http(port, key)
        try:
            while True:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                if total is not None and sent >= total:
                    return
                i = next(counter)
                sent += batch
                if batch == 1:
                    body: Any = message(i, tag)
                else:
                    body = {"messages": [message(i * batch + k, tag) for k in range(batch)]}
                t = time.perf_counter()
                try:
                    status, reply = await asyncio.wait_for(
                        http.request("POST", "/api/v1/messages", body), TIMEOUT_S
                    )
                except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                    codes["timeout" if isinstance(exc, TimeoutError) else "error"] += 1
                    http.close()
                    continue
                latencies.append((time.perf_counter() - t) * 1000)
                codes[str(status)] += 1
                if status == 202:
                    accepted.extend(reply["ids"] if batch > 1 else [reply["id"]])
                elif status in (429, 503):
                    await asyncio.sleep(0.05)
        finally:
            http.close()

    before = len(accepted)
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    out = stats(latencies, len(accepted) - before, elapsed)
    out.update(clients=clients, batch=batch, status_codes=dict(codes), seconds=elapsed)
    return out


async def get_load(port: int, key: str, path: str, n: int) -> dict[str, Any]:
    http = Http(port, key)
    latencies = []
    codes: Counter[str] = Counter()
    try:
        for _ in range(n):
            t = time.perf_counter()
            status, _ = await http.request("GET", path)
            latencies.append((time.perf_counter() - t) * 1000)
            codes[str(status)] += 1
    finally:
        http.close()
    return {**stats(latencies, n, sum(latencies) / 1000), "status_codes": dict(codes)}


@contextlib.contextmanager
def store(backend: str, workdir: Path) -> Iterator[Settings]:
    if backend == "sqlite":
        yield Settings(data_dir=workdir / "data")
        return
    schema = f"postroom_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield Settings(
            data_dir=workdir / "data", database_url=f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
        )
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@contextlib.contextmanager
def serving(settings: Settings, port: int) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "POSTROOM_DATA_DIR": str(settings.data_dir)}
    # all 64 clients come from 127.0.0.1: lift serve's per-address cap (50 by default,
    # a guard against one slow client hoarding connections) above the benchmark's count
    env["POSTROOM_MAX_CONNECTIONS_PER_CLIENT"] = "200"
    if settings.database_url:
        env["POSTROOM_DATABASE_URL"] = settings.database_url
    exe = str(Path(sys.executable).parent / "postroom")
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                sys.exit("postroom serve exited at start")
            try:
                asyncio.run(Http(port, "").request("GET", "/healthz"))
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("postroom serve did not answer within 60 s")
                time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def python_send(app: Postroom, n: int, accepted: list[int]) -> dict[str, Any]:
    latencies = []
    started = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        accepted.append(app.send(plain(i, "py"), profile="bench"))
        latencies.append((time.perf_counter() - t) * 1000)
    return stats(latencies, n, time.perf_counter() - started)


def python_send_many(app: Postroom, n: int, batch: int, accepted: list[int]) -> dict[str, Any]:
    requests = [SendRequest(plain(i, "pymany"), profile="bench") for i in range(n)]
    latencies = []
    started = time.perf_counter()
    for k in range(0, n, batch):
        t = time.perf_counter()
        accepted += app.send_many(requests[k : k + batch])
        latencies.append((time.perf_counter() - t) * 1000)
    return stats(latencies, n, time.perf_counter() - started)


def sent_count(app: Postroom) -> int:
    return app.outbox.queue.counts().get("sent", 0)


def one_backend(backend: str, sizes: dict[str, int], soak_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, store(backend, Path(tmp)) as settings:
        app = Postroom.open(settings=settings)
        sink_port = free_port()
        sink = start_sink(sink_port)
        app.profiles.create(
            {
                "name": "bench",
                "smtp": {
                    "host": "127.0.0.1",
                    "port": sink_port,
                    "security": "none",
                    "auth": "none",
                },
                "sender": {"from_address": "robot@bench.test", "from_name": "Robot"},
                "max_connections": 8,
            }
        )
        key = app.accounts.create_api_key("bench", role="sender").key
        port = free_port()
        accepted: list[int] = []
        out: dict[str, Any] = {"backend": backend}
        try:
            with serving(settings, port):
                settle()
                progress(f"{backend}: Python send() x{sizes['single']}, send_many")
                out["python_send"] = python_send(app, sizes["single"], accepted)
                settle()
                out["python_send_many"] = python_send_many(app, sizes["batch"], 100, accepted)
                loop = asyncio.new_event_loop()
                for clients in (1, 16, 64):
                    settle()
                    n = sizes["single"] if clients == 1 else sizes["single"] * 4
                    progress(f"{backend}: REST single messages, {clients} clients, {n} msgs")
                    out[f"rest_single_{clients}"] = loop.run_until_complete(
                        post_load(port, key, clients, total=n, seconds=None, batch=1,
                                  tag=f"rest{clients}", accepted=accepted)
                    )  # fmt: skip
                settle()
                progress(f"{backend}: REST batches of 100, 1 client")
                out["rest_batch_100"] = loop.run_until_complete(
                    post_load(port, key, 1, total=sizes["batch"], seconds=None, batch=100,
                              tag="restbatch", accepted=accepted)
                )  # fmt: skip
                settle()
                progress(f"{backend}: GET a message, /healthz")
                out["get_message"] = loop.run_until_complete(
                    get_load(port, key, f"/api/v1/messages/{accepted[-1]}", sizes["gets"])
                )
                out["healthz"] = loop.run_until_complete(
                    get_load(port, key, "/healthz", sizes["gets"])
                )
                settle()
                progress(f"{backend}: soak, 64 clients for {soak_s:.0f} s")
                sent_before = sent_count(app)
                soak = loop.run_until_complete(
                    post_load(port, key, 64, total=None, seconds=soak_s, batch=1,
                              tag="soak", accepted=accepted)
                )  # fmt: skip
                soak["worker_msgs_per_s"] = (sent_count(app) - sent_before) / soak["seconds"]
                out["soak_64"] = soak
                loop.close()
                progress(f"{backend}: waiting for the worker to deliver everything")
                deadline = time.monotonic() + 600
                while app.outbox.queue.due_or_in_flight(within_s=0) > 0:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
            out["check"] = check(app, accepted)
        finally:
            app.close()
            sink.terminate()
            sink.wait(5)
        py_send = out["python_send"]["p50_ms"]
        py_many = out["python_send_many"]["msgs_per_s"]
        out["ratio_rest_single_p50_vs_send"] = out["rest_single_1"]["p50_ms"] / py_send
        out["ratio_rest_batch_vs_send_many"] = out["rest_batch_100"]["msgs_per_s"] / py_many
        return out


def check(app: Postroom, accepted: list[int]) -> dict[str, Any]:
    """Every accepted id once in the outbox, and sent."""
    with app.sessions() as s:
        rows = dict(
            s.execute(text("SELECT status, count(*) FROM outbox_messages GROUP BY status")).all()
        )
        present = s.execute(text("SELECT id, status FROM outbox_messages")).all()
    status = dict(present)
    ids = Counter(accepted)
    return {
        "accepted": len(accepted),
        "duplicate_ids": sum(1 for c in ids.values() if c > 1),
        "missing": sum(1 for i in ids if i not in status),
        "not_sent": sum(1 for i in ids if status.get(i) not in (None, "sent")),
        "rows": sum(rows.values()),
        "by_status": rows,
    }


SIZES = {
    "full": {"single": 1000, "batch": 10000, "gets": 500},
    "quick": {"single": 60, "batch": 400, "gets": 50},
}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs of every number (ratios taken within each run)."""
    if len(runs) == 1:
        return runs[0]

    def merge(values: list[Any]) -> Any:
        if isinstance(values[0], dict):
            return {k: merge([v[k] for v in values]) for k in values[0] if k != "status_codes"}
        if isinstance(values[0], int | float) and not isinstance(values[0], bool):
            return statistics.median(values)
        return values[0]

    out = merge(runs)
    out["runs"] = runs
    return out


def show(result: dict[str, Any]) -> None:
    for backend, r in result.items():
        print(f"== {backend}")
        rows = [
            ("Python send(), one at a time", r["python_send"]),
            ("Python send_many, batches of 100", r["python_send_many"]),
            ("REST single, 1 client", r["rest_single_1"]),
            ("REST single, 16 clients", r["rest_single_16"]),
            ("REST single, 64 clients", r["rest_single_64"]),
            ("REST batches of 100, 1 client", r["rest_batch_100"]),
            ("GET /api/v1/messages/{id}", r["get_message"]),
            ("GET /healthz", r["healthz"]),
            ("soak: 64 clients", r["soak_64"]),
        ]
        for name, m in rows:
            codes = m.get("status_codes", "")
            print(
                f"{name:34} {m['msgs_per_s']:>8.0f}/s  p50 {m['p50_ms']:7.2f}  "
                f"p99 {m['p99_ms']:7.2f}  max {m['max_ms']:8.2f} ms  {codes}"
            )
        print(f"soak: worker delivered {r['soak_64']['worker_msgs_per_s']:.0f} msg/s")
        print(f"REST single p50 / send() p50:      {r['ratio_rest_single_p50_vs_send']:.2f}")
        print(f"REST batches / send_many:          {r['ratio_rest_batch_vs_send_many']:.2f}")
        print(f"check: {r['check']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--runs", type=whole_number(1, 20), default=1, help="1 to 20; medians")
    parser.add_argument("--soak", type=whole_number(1, 3600), default=60, help="seconds")
    parser.add_argument("--quick", action="store_true", help="few messages (a smoke test)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = SIZES["quick" if args.quick else "full"]
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    result: dict[str, Any] = {}
    for backend in backends:
        runs = []
        for k in range(args.runs):
            if args.runs > 1:
                progress(f"{backend}: run {k + 1} of {args.runs}")
            runs.append(one_backend(backend, sizes, args.soak))
        result[backend] = summary(runs)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        show(result)
    bad = [b for b, r in result.items() for run in r.get("runs", [r])
           if run["check"]["missing"] or run["check"]["duplicate_ids"] or run["check"]["not_sent"]]  # fmt: skip
    if bad:
        sys.exit(f"lost, duplicated or undelivered messages on {', '.join(sorted(set(bad)))}")


if __name__ == "__main__":
    main()
