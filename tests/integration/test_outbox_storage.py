"""How the outbox stores messages: bodies apart from their state, and on SQLite a
driver-level multi-row insert that must store exactly what SQLAlchemy would
(docs/decisions/0004)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from postroom import Postroom
from postroom.outbox.queue import Enqueue, _stage_core, stage
from postroom.outbox.service import SendRequest
from postroom.settings import Settings
from tests.conftest import PG_URL
from tests.integration.test_outbox import msg, sink_profile


def item(n: int, profile_id: int, **over: object) -> Enqueue:
    due = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)
    base = Enqueue(
        profile_id=profile_id, profile_name="sink", process="nightly", priority=0,
        due_at=due, deadline_at=due + timedelta(hours=24), message_id=f"<{n}.x@postroom.test>",
        idempotency_key=None, subject=f"m{n} – ünïcode", envelope_from="robot@postroom.test",
        recipients=[f"u{n}@postroom.test", "ß@postroom.test"], raw=b"Subject: x\r\n\r\nbody\r\n",
    )  # fmt: skip
    return replace(base, **over)  # type: ignore[arg-type]


def stored(app: Postroom, id: int) -> tuple[object, ...]:
    with app.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT profile_name, process, status, priority, due_at, deadline_at, attempts,"
                " message_id, subject, envelope_from, recipients FROM outbox_messages"
                " WHERE id = :id"
            ),
            {"id": id},
        ).one()
        return tuple(row)


def test_the_fast_path_stores_what_sqlalchemy_stores(app: Postroom) -> None:
    sink_profile(app, 1)
    pid = app.profiles.get("sink").id
    with app.sessions() as s:
        fast = stage(s, [item(1, pid), item(2, pid)])
        general = _stage_core(
            s, [item(1, pid, message_id="<1.y@postroom.test>")], by_message_id=False
        )
        s.commit()
    a, b = stored(app, fast[0]), stored(app, general[0])
    assert a[:7] == b[:7] and a[8:] == b[8:]  # all but the Message-ID, byte for byte
    got = app.outbox.get(fast[0])
    assert got.due_at == item(1, pid).due_at and got.recipients == item(1, pid).recipients
    assert got.subject == "m1 – ünïcode" and got.status == "queued"
    # the bodies are stored apart, and claims read them back
    claims = app.outbox.queue.claim("w", limit=10, lease_s=60)
    assert {c.id: c.raw for c in claims}[fast[1]] == b"Subject: x\r\n\r\nbody\r\n"


@pytest.mark.parametrize(
    "addresses",
    [[], ["a@x.test"], ["a@x.test", "b+tag@y.test"], ['"q"@x.test'], ["back\\slash@x.test"],
     ["ß@x.test"], ["a@x.test", "tab\t@x.test"], ["del\x7f@x.test"], ["a@x.test", "ü@x.test"]],
)  # fmt: skip
def test_recipient_lists_are_written_as_json_writes_them(
    sqlite_app: Postroom, addresses: list[str]
) -> None:
    from postroom.db.tables import OutboxMessage
    from postroom.outbox.queue import _addresses_json, _bind

    process = _bind(OutboxMessage.__table__.c.recipients, sqlite_app.engine.dialect)
    assert _addresses_json(process)(addresses) == process(addresses)


def test_a_large_batch_is_stored_in_order(app: Postroom) -> None:
    sink_profile(app, 1)
    requests = [SendRequest(msg(subject=f"n{i}"), profile="sink") for i in range(2500)]
    ids = app.send_many(requests)
    assert len(set(ids)) == 2500
    assert [app.outbox.get(ids[i]).subject for i in (0, 999, 1000, 2001, 2499)] == [
        "n0", "n999", "n1000", "n2001", "n2499",
    ]  # fmt: skip
    claims = app.outbox.queue.claim("w", limit=3000, lease_s=60)
    assert len(claims) == 2500 and all(c.raw.startswith(b"From: ") for c in claims)


def test_idempotency_keys_repeated_within_one_batch_store_one_message(app: Postroom) -> None:
    sink_profile(app, 1)
    ids = app.send_many(
        [
            SendRequest(msg(subject="a"), profile="sink", idempotency_key="k-1"),
            SendRequest(msg(subject="b"), profile="sink"),
            SendRequest(msg(subject="c"), profile="sink", idempotency_key="k-1"),
        ]
    )
    assert ids[0] == ids[2] != ids[1]
    assert app.outbox.get(ids[0]).subject == "a"
    assert app.send(msg(subject="d"), profile="sink", idempotency_key="k-1") == ids[0]


def test_attempt_rows_are_stored_as_sqlalchemy_stores_them(app: Postroom) -> None:
    from sqlalchemy import insert

    from postroom.db.tables import OutboxAttempt
    from postroom.outbox.queue import Delivery
    from postroom.smtp.replies import Outcome

    sink_profile(app, 1)
    id = app.send(msg(), profile="sink")
    (claim,) = app.outbox.queue.claim("w", limit=1, lease_s=60)
    results = {"x@postroom.test": {"code": 450, "text": "later"}}
    app.outbox.queue.complete([Delivery(claim, Outcome.SENT, 250, "ok", "w", 1.25, results)])
    at = app.outbox.get(id).history[0].at
    with app.sessions() as s:  # the same row, through SQLAlchemy
        s.execute(
            insert(OutboxAttempt),
            [{"outbox_id": id, "at": at, "worker": "w", "outcome": "sent", "code": 250,
              "text": "ok", "recipient_results": results, "duration_ms": 1.2}],
        )  # fmt: skip
        s.commit()
    with app.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT at, worker, outcome, code, text, recipient_results, duration_ms"
                 " FROM outbox_attempts WHERE outbox_id = :id ORDER BY id"), {"id": id}
        ).all()  # fmt: skip
    assert len(rows) == 2 and tuple(rows[0]) == tuple(rows[1])
    assert app.outbox.get(id).history[0].recipient_results == results


def test_a_plain_250_batch_is_stored_as_sqlalchemy_stores_it(app: Postroom) -> None:
    """On SQLite the plain-250 batch is marked sent by a driver-level statement; the rows
    must hold exactly what the general path (SQLAlchemy, used on PostgreSQL and after a
    lost lease) writes."""
    from postroom.outbox.queue import Delivery
    from postroom.smtp.replies import Outcome

    sink_profile(app, 1)
    ids = [app.send(msg(), profile="sink") for _ in range(2)]
    queue = app.outbox.queue
    claims = queue.claim("w", limit=2, lease_s=60)
    now = datetime(2026, 11, 23, 10, 0, 0, 654321, tzinfo=UTC)
    with app.sessions() as s:
        for counted, c in zip((True, False), claims, strict=True):
            d = Delivery(c, Outcome.SENT, 250, "250 ok", "w")
            assert queue._record(s, [d], now, counted=counted) == []
        s.commit()
    with app.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT status, sent_at, last_error, lease_owner, lease_until, last_code,"
                 " recipient_results, attempts FROM outbox_messages ORDER BY id")
        ).all()  # fmt: skip
    assert len(rows) == 2 and tuple(rows[0]) == tuple(rows[1])
    assert [app.outbox.get(i).sent_at for i in ids] == [now, now]
    assert [app.outbox.get(i).status for i in ids] == ["sent", "sent"]


def test_claims_take_expired_leases_then_priority_then_due_time(app: Postroom) -> None:
    sink_profile(app, 1)
    queue = app.outbox.queue
    now = datetime.now(UTC)
    stale = app.send(msg(priority="low"), profile="sink")
    assert [c.id for c in queue.claim("dead-worker", limit=1, lease_s=0.05)] == [stale]
    low = app.send(msg(priority="low"), profile="sink")
    later = app.send(msg(), profile="sink", send_at=now + timedelta(hours=1))
    normal_old = app.send(msg(), profile="sink", send_at=now - timedelta(minutes=5))
    normal_new = app.send(msg(), profile="sink")
    high = app.send(msg(priority="high"), profile="sink")
    sink_profile(app, 1, name="off")
    app.send(msg(priority="high"), profile="off")
    app.profiles.update("off", {"enabled": False})  # a disabled profile's mail stays put
    time.sleep(0.1)  # the dead worker's lease runs out
    ids = [c.id for c in queue.claim("w", limit=10, lease_s=60)]
    # the message a dead worker held has waited longest: it goes first
    assert ids == [stale, high, normal_old, normal_new, low] and later not in ids


@pytest.mark.parametrize("blocked", [(), (7,), (7, 9)])
def test_sqlite_claims_walk_the_ready_index_alone(
    sqlite_app: Postroom, blocked: tuple[int, ...]
) -> None:
    """Without it a claim sorts every due row: its cost would grow with the queue. The
    index covers the query (disabled or paused profiles left out by id): a claim chooses
    its batch without reading the messages."""
    from postroom.outbox.queue import _SQLITE_READY_SQL

    sql = _SQLITE_READY_SQL.format(
        blocked=f" AND profile_id NOT IN ({','.join('?' * len(blocked))})" if blocked else ""
    )
    with sqlite_app.engine.connect() as conn:
        plan = " | ".join(
            str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, ("", *blocked, 1))
        )  # fmt: skip
    assert "USING COVERING INDEX ix_outbox_ready" in plan and "TEMP B-TREE" not in plan


def test_sqlite_expired_leases_are_found_among_the_messages_being_sent(
    sqlite_app: Postroom,
) -> None:
    """Profile by profile on (profile, status): never a read of every message."""
    from postroom.outbox.queue import _SQLITE_EXPIRED_SQL

    with sqlite_app.engine.connect() as conn:
        plan = " | ".join(
            str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + _SQLITE_EXPIRED_SQL, ("", 1))
        )  # fmt: skip
    assert (
        "SEARCH m USING COVERING INDEX ix_outbox_profile_status"
        " (profile_id=? AND status=? AND lease_until<?)" in plan
    )
    assert "SCAN m" not in plan


def test_listing_a_rare_state_reads_the_attention_index(sqlite_app: Postroom) -> None:
    """Failed mail is found without reading the sent mail around it."""
    query = sqlite_app.outbox.queue.list_query(status="failed")
    sql = str(query.compile(sqlite_app.engine, compile_kwargs={"literal_binds": True}))
    with sqlite_app.engine.connect() as conn:
        plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    assert "USING INDEX ix_outbox_attention (status=?)" in plan


def test_a_new_sqlite_database_has_16_kib_pages(sqlite_app: Postroom) -> None:
    """Several composed messages share a page (docs/decisions/0006)."""
    with sqlite_app.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA page_size").scalar() == 16384
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 2048


def test_an_existing_4_kib_database_keeps_its_pages_and_checkpoints_by_size(
    tmp_path: Path,
) -> None:
    import sqlite3

    path = tmp_path / "data" / "postroom.db"
    path.parent.mkdir()
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()  # 4 KiB pages
    app = Postroom.open(settings=Settings(data_dir=tmp_path / "data"))
    try:
        with app.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA page_size").scalar() == 4096
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 8192
        sink_profile(app, 1)
        assert app.outbox.get(app.send(msg(), profile="sink")).status == "queued"
    finally:
        app.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    """An empty database to migrate step by step: a SQLite file, or a PostgreSQL schema
    of its own (dropped afterwards). Yields the backend's name and an engine."""
    from postroom.db.engine import make_engine

    db: str = request.param
    url = f"sqlite:///{tmp_path / 'm.db'}"
    schema = f"postroom_mig_{uuid.uuid4().hex[:10]}"
    admin = None
    if db == "postgresql":
        request.getfixturevalue("pg_schema_url")  # PostgreSQL is there (or the test fails/skips)
        admin = create_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    try:
        yield db, engine
    finally:
        engine.dispose()
        if admin is not None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def store_message(engine: Engine, status: str) -> None:
    """One outbox message in ``status``, written with plain SQL (any schema version)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO outbox_messages (profile_name, status, priority, created_at,"
                " due_at, deadline_at, attempts, message_id, subject, envelope_from,"
                " recipients) VALUES ('p', :status, 0, :t, :t, :t, 1, '<m@x>', 's',"
                " 'a@x.test', '[]')"
            ),
            {"status": status, "t": datetime(2026, 11, 23, tzinfo=UTC)},
        )


def test_migration_0010_swaps_the_status_index_and_keeps_the_queue(
    migrated: tuple[str, Engine],
) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from postroom.db.engine import _alembic_config, upgrade

    _, engine = migrated
    before = "0009_outbox_ready_index"
    upgrade(engine, before)

    def indexes() -> set[str]:
        return {i["name"] for i in inspect(engine).get_indexes("outbox_messages")}  # type: ignore[misc]

    def ready_columns() -> list[str]:
        (ready,) = [
            i
            for i in inspect(engine).get_indexes("outbox_messages")
            if i["name"] == "ix_outbox_ready"
        ]
        return [str(c) for c in ready["column_names"] or ready.get("expressions", [])]

    assert "ix_outbox_due" in indexes() and "ix_outbox_attention" not in indexes()
    assert ready_columns() == ["priority", "due_at"]
    store_message(engine, "failed")
    upgrade(engine)
    assert "ix_outbox_due" not in indexes() and "ix_outbox_attention" in indexes()
    assert ready_columns() == ["priority", "due_at", "profile_id", "status"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM outbox_messages")).scalar() == "failed"
    command.downgrade(_alembic_config(engine), before)
    assert "ix_outbox_due" in indexes() and "ix_outbox_attention" not in indexes()
    assert ready_columns() == ["priority", "due_at"]


def test_migration_0011_rewrites_the_partial_index_conditions_and_keeps_the_queue(
    migrated: tuple[str, Engine],
) -> None:
    """The conditions become OR-ed comparisons (cheaper for SQLite to evaluate at every
    status change, docs/decisions/0007); the queries still use the indexes; and back."""
    from alembic import command

    from postroom.db.engine import _alembic_config, upgrade
    from postroom.db.tables import ATTENTION_CONDITION, READY_CONDITION

    db, engine = migrated

    def conditions() -> str:
        with engine.connect() as conn:
            if db == "sqlite":
                sql = "SELECT group_concat(sql, ' | ') FROM sqlite_master WHERE name IN"
                sql += " ('ix_outbox_ready', 'ix_outbox_attention')"
            else:
                sql = "SELECT string_agg(indexdef, ' | ') FROM pg_indexes WHERE indexname IN"
                sql += " ('ix_outbox_ready', 'ix_outbox_attention')"
                sql += " AND schemaname = current_schema()"
            return str(conn.execute(text(sql)).scalar())

    before = "0010_outbox_status_indexes"
    upgrade(engine, before)
    assert "IN (" in conditions().replace("= ANY (", "IN (")
    store_message(engine, "retrying")
    upgrade(engine)
    after = conditions()
    assert "IN (" not in after and "ANY" not in after
    assert after.count("'retrying'") == 2 and "'cancelled'" in after
    with engine.connect() as conn:
        for condition in (READY_CONDITION, ATTENTION_CONDITION):  # the row is in both
            found = f"SELECT count(*) FROM outbox_messages WHERE {condition}"
            assert conn.execute(text(found)).scalar() == 1
        if db == "sqlite":
            plan = " | ".join(
                str(r[-1])
                for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT id FROM outbox_messages"
                    f" WHERE {ATTENTION_CONDITION} AND status = 'retrying'"
                )
            )
            assert "ix_outbox_attention" in plan
    command.downgrade(_alembic_config(engine), before)
    assert "IN (" in conditions().replace("= ANY (", "IN (")


@pytest.mark.parametrize("per_read", [1, 3000, 32 * 2**20])
def test_claimed_bodies_come_back_byte_for_byte_however_they_are_chunked(
    app: Postroom, monkeypatch: pytest.MonkeyPatch, per_read: int
) -> None:
    """On SQLite a claim reads bodies concatenated in one row per chunk and cuts them
    apart by length: every message must get exactly its own bytes back."""
    import postroom.outbox.queue as queue_module

    monkeypatch.setattr(queue_module, "_BODIES_PER_READ", per_read)
    sink_profile(app, 1)
    texts = [f"message {n}\n" + ".dot line\n" * n + "x" * (n * 97) for n in range(12)]
    ids = app.send_many([SendRequest(msg(text=t), profile="sink") for t in texts])
    with app.engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT outbox_id, raw FROM outbox_bodies")).all())
    claims = app.outbox.queue.claim("w", limit=50, lease_s=60)
    assert sorted(c.id for c in claims) == sorted(ids)
    for c in claims:
        assert c.raw == stored[c.id] and c.recipients == ["bob@postroom.test"]
