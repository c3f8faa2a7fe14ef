"""Inbound speed, measured side by side in one run against a private Dovecot.

A folder is filled with N messages by IMAP APPEND, then read by:

- bare ``imaplib``: one ``UID FETCH 1:* BODY.PEEK[]`` (the ceiling for a Python client);
- postroom's first sync (the runner ``serve`` starts), timed from start until all N are
  stored and marked processed (``mark_seen``): with no subscriber, and with one webhook
  subscriber (a local HTTP receiver), on SQLite and on PostgreSQL.

Each postroom phase runs in a fresh process; its peak RSS includes the parser process.
Every phase checks that each message was stored exactly once.

    python bench/inbound.py [--messages N] [--json] [--no-postgresql]
"""

from __future__ import annotations

import argparse
import email.utils
import http.server
import imaplib
import json
import multiprocessing
import resource
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test harness starts the mail servers

from tests.harness.mailservers import HarnessUnavailable, MailServers, check_available  # noqa: E402

BODY = ("Run 'nightly-regression' finished: 412 passed, 3 failed, 7 skipped.\n" * 28)[:2000]
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
USER, PASSWORD = "bench@postroom.test", "bench-password"


def progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def raw_message(i: int) -> bytes:
    return (
        f"From: Robot <robot@bench.test>\r\nTo: {USER}\r\nSubject: Run {i} finished\r\n"
        f"Date: {email.utils.formatdate()}\r\nMessage-ID: <{uuid.uuid4().hex}@bench.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + BODY.replace("\n", "\r\n")
    ).encode()


def imap(servers: MailServers) -> imaplib.IMAP4_SSL:
    c = imaplib.IMAP4_SSL(servers.host, servers.ports["imaps"],
                          ssl_context=servers.client_ssl_context(), timeout=60)  # fmt: skip
    c.login(USER, PASSWORD)
    return c


def fill(servers: MailServers, n: int) -> None:
    c = imap(servers)
    try:
        for i in range(n):
            c.append("INBOX", None, None, raw_message(i))
    finally:
        c.logout()


def unseen(servers: MailServers) -> None:
    """Every message unread again: each postroom phase starts from the same folder."""
    c = imap(servers)
    try:
        c.select("INBOX")
        c.uid("STORE", "1:*", "-FLAGS.SILENT", r"(\Seen)")
    finally:
        c.logout()


def bare_fetch(servers: MailServers, n: int) -> float:
    started = time.perf_counter()
    c = imap(servers)
    try:
        c.select("INBOX", readonly=True)
        typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
        got = sum(1 for part in data if isinstance(part, tuple))
    finally:
        c.logout()
    if typ != "OK" or got != n:
        sys.exit(f"imaplib fetched {got} of {n} messages ({typ})")
    return n / (time.perf_counter() - started)


class _Hook(http.server.BaseHTTPRequestHandler):
    count = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with _Hook.lock:
            _Hook.count += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def postroom_sync(
    imap_settings: dict[str, Any], n: int, data: str, db_url: str | None, webhook: bool
) -> dict[str, Any]:
    """In a fresh process: the runner's first sync of the folder, until all ``n`` are
    stored and processed. Returns msgs/s, peak RSS (MB) and the exactly-once check."""
    import asyncio

    from sqlalchemy import func, select

    from postroom import Postroom
    from postroom.inbound.schemas import InboundConfig
    from postroom.inbound.tables import InboundMessage
    from postroom.settings import Settings

    app = Postroom.open(settings=Settings(data_dir=Path(data), database_url=db_url))
    app.profiles.create({
        "name": "bench",
        "smtp": {"host": "127.0.0.1", "port": 25, "security": "none", "auth": "none"},
        "sender": {"from_address": USER},
        "imap": imap_settings,
    })  # fmt: skip
    server = None
    if webhook:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        app.inbound.webhooks.add(f"http://127.0.0.1:{server.server_address[1]}/hook")

    def processed() -> int:
        with app.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(InboundMessage)
                                .where(InboundMessage.status == "processed")) or 0)  # fmt: skip

    async def run() -> float:
        runner = app.inbound.runner(config=InboundConfig(rescan_s=0.2))
        started = time.perf_counter()
        task = asyncio.create_task(runner.run())
        while await asyncio.to_thread(processed) < n:
            if time.perf_counter() - started > 600:
                sys.exit("postroom did not store and process everything within 10 minutes")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        runner.stop()
        await asyncio.wait_for(task, 60)
        return elapsed

    elapsed = asyncio.run(run())
    with app.sessions() as s:
        stored = int(s.scalar(select(func.count()).select_from(InboundMessage)) or 0)
        distinct = int(s.scalar(select(func.count(func.distinct(InboundMessage.message_id)))) or 0)
    app.close()
    if server is not None:
        server.shutdown()
    rss = max(resource.getrusage(who).ru_maxrss for who in
              (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024  # fmt: skip
    return {
        "msgs_per_s": n / elapsed,
        "peak_rss_mb": rss,
        "stored": stored,
        "stored_exactly_once": stored == n == distinct,
        "webhook_posts": _Hook.count if webhook else None,
    }


def pg_schema() -> str | None:
    """A fresh schema on the test PostgreSQL, or None when it is not there."""
    from sqlalchemy import create_engine, text

    schema = f"postroom_bench_{uuid.uuid4().hex[:10]}"
    try:
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any fault means "not available"
        progress(f"PostgreSQL not available ({type(exc).__name__}): SQLite only")
        return None
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def drop_schema(url: str) -> None:
    from sqlalchemy import create_engine, text

    schema = url.rsplit("%3D", 1)[1]
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def whole_number(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=whole_number(10, 100_000), default=2000,
                        help="10 to 100000")  # fmt: skip
    parser.add_argument("--no-postgresql", action="store_true", help="SQLite only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.messages
    try:
        check_available()
    except HarnessUnavailable as exc:
        sys.exit(f"the mail servers cannot start here: {exc.reason}")
    with tempfile.TemporaryDirectory(prefix="postroom-bench-in-") as tmp:
        servers = MailServers(users={USER: PASSWORD})  # its own directory, readable by the servers
        try:
            servers.start()
            progress(f"filling INBOX with {n} messages by APPEND")
            fill(servers, n)
            progress("bare imaplib, one UID FETCH 1:* BODY.PEEK[]")
            bare = bare_fetch(servers, n)
            imap_settings = {
                "host": servers.host, "port": servers.ports["imaps"], "security": "tls",
                "ca_bundle": Path(servers.ca_pem).read_text(), "auth": "basic",
                "username": USER, "password": PASSWORD, "processed": "mark_seen",
            }  # fmt: skip
            backends: list[tuple[str, str | None]] = [("sqlite", None)]
            pg = None if args.no_postgresql else pg_schema()
            if pg:
                backends.append(("postgresql", pg))
            phases: dict[str, Any] = {}
            spawn = multiprocessing.get_context("spawn")
            for backend, url in backends:
                for webhook in (False, True):
                    key = f"{backend}_{'webhook' if webhook else 'no_subscriber'}"
                    progress(f"postroom first sync, {backend}, "
                             f"{'one webhook' if webhook else 'no subscriber'}")  # fmt: skip
                    unseen(servers)
                    if url:
                        drop_schema(url)
                        url = pg_schema()
                    with spawn.Pool(1) as pool:
                        result = pool.apply(postroom_sync, (imap_settings, n,
                                            str(Path(tmp) / key), url, webhook))  # fmt: skip
                    result["ratio_vs_bare_fetch"] = result["msgs_per_s"] / bare
                    phases[key] = result
            if pg and url:
                drop_schema(url)
        finally:
            servers.cleanup()
    report = {"messages": n, "bare_imaplib_fetch_msgs_per_s": bare, "postroom": phases}
    bad = [k for k, v in phases.items() if not v["stored_exactly_once"]]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"messages:                 {n} of ~2 KB, in a private Dovecot")
        print(f"bare imaplib fetch:       {bare:>8.0f} msg/s")
        for key, v in phases.items():
            print(f"postroom {key + ':':<26}{v['msgs_per_s']:>8.0f} msg/s  ratio "
                  f"{v['ratio_vs_bare_fetch']:.3f}x  peak RSS {v['peak_rss_mb']:.0f} MB  "
                  f"{'each stored once' if v['stored_exactly_once'] else 'NOT STORED ONCE'}")  # fmt: skip
    if bad:
        sys.exit(f"not every message was stored exactly once: {', '.join(bad)}")


if __name__ == "__main__":
    main()
