"""The outbox in the database: enqueue durably, claim with a lease, record every attempt.

A claim marks messages ``sending`` with a lease (``lease_until``) and an owner token.
Completing a message is allowed only to the owner whose lease it still holds, so a
worker that was stopped past its lease (and whose messages another worker took over)
cannot overwrite what the new owner did. On PostgreSQL claims use ``FOR UPDATE SKIP
LOCKED`` so many workers never take the same message; SQLite has one writer anyway.
"""

from __future__ import annotations

import builtins
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

from sqlalchemy import Select, Table, delete, exists, func, insert, or_, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from postroom.audit import record
from postroom.db.tables import (
    ATTENTION_CONDITION,
    ATTENTION_STATES,
    READY_CONDITION,
    OutboxAttempt,
    OutboxBody,
    OutboxMessage,
    Profile,
    utcnow,
)
from postroom.errors import Conflict, FieldError, NotFound, ValidationError
from postroom.inbound.outbox_bounces import apply_held
from postroom.oauth2.tables import OAuth2Pause
from postroom.outbox.policy import GiveUp, RetryPolicy, next_attempt
from postroom.outbox.schemas import (
    DUE_STATES,
    AttemptRead,
    OutboxRead,
    OutboxStatus,
    OutboxSummary,
)
from postroom.outbox.search import describe, search_term, searched
from postroom.smtp.replies import Outcome

__all__ = ["Claim", "Delivery", "Enqueue", "OutboxQueue", "stage"]

DEFAULT_DEADLINE = timedelta(hours=24)
log = logging.getLogger("postroom.outbox")
# A profile whose OAuth2 configuration needs consent is paused: its messages stay queued.
_NOT_PAUSED = ~exists().where(OAuth2Pause.profile_id == OutboxMessage.profile_id)
# The hot paths (enqueue, claim, complete) use Core statements on the tables: the ORM's
# unit of work costs more per row than the database does (docs/decisions/0004).
_MESSAGES: Table = OutboxMessage.__table__  # type: ignore[assignment]
_BODIES: Table = OutboxBody.__table__  # type: ignore[assignment]
_ATTEMPTS: Table = OutboxAttempt.__table__  # type: ignore[assignment]
_PROFILES: Table = Profile.__table__  # type: ignore[assignment]
_M = _MESSAGES.c
#: a profile's last_used_at is at most this much older than its last delivery
LAST_USED_PRECISION = timedelta(minutes=1)
_READY = text(READY_CONDITION)
# The index holds every column this reads: a claim does not touch the messages. Profiles
# that are disabled or paused (rare, few) are left out by id.
_SQLITE_READY_SQL = f"""
SELECT id FROM outbox_messages INDEXED BY ix_outbox_ready
WHERE {READY_CONDITION} AND due_at <= ? AND profile_id IS NOT NULL{{blocked}}
ORDER BY priority DESC, due_at LIMIT ?
"""

_SQLITE_BLOCKED_SQL = """
SELECT id FROM profiles WHERE enabled = 0 UNION SELECT profile_id FROM oauth2_paused_profiles
"""
# Leases expire only among the messages being sent, found profile by profile: the planner
# has no statistics to choose that over reading every message (docs/decisions/0006).
_SQLITE_EXPIRED_SQL = """
SELECT m.id FROM profiles AS p
CROSS JOIN outbox_messages AS m INDEXED BY ix_outbox_profile_status
WHERE m.profile_id = p.id AND p.enabled = 1 AND m.status = 'sending' AND m.lease_until < ?
  AND NOT EXISTS (SELECT 1 FROM oauth2_paused_profiles AS x WHERE x.profile_id = m.profile_id)
ORDER BY m.lease_until LIMIT ?
"""
_ATTENTION = text(ATTENTION_CONDITION)
#: the states a message can be retried from
RETRY_FROM = (
    OutboxStatus.FAILED.value, OutboxStatus.CANCELLED.value,
    OutboxStatus.BOUNCED.value, OutboxStatus.RETRYING.value,
)  # fmt: skip
#: the most one bulk retry or cancel acts on (run it again for more)
BULK_MAX = 100_000


def _filters(
    *,
    status: str | None,
    profile: str | None,
    process: str | None,
    since: datetime | None,
    until: datetime | None,
    owner: int | None,
    statuses: Sequence[str] | None,
) -> builtins.list[Any]:
    conditions: builtins.list[Any] = []
    if status:
        conditions.append(_M.status == status)
        if status in ATTENTION_STATES:
            conditions.append(_ATTENTION)  # lets the planner take the small partial index
    elif statuses:
        conditions.append(_M.status.in_(statuses))
    if profile:
        conditions.append(func.lower(_M.profile_name) == profile.strip().lower())
    if process:
        conditions.append(func.lower(_M.process) == process.strip().lower())
    if since:
        conditions.append(_M.created_at >= since)
    if until:
        conditions.append(_M.created_at < until)
    if owner is not None:
        conditions.append(_M.created_by == owner)
        conditions.append(_M.created_by.is_not(None))  # partial index
    return conditions


@dataclass(slots=True)
class Enqueue:
    """One composed message ready to store."""

    profile_id: int
    profile_name: str
    process: str | None
    priority: int
    due_at: datetime
    deadline_at: datetime
    message_id: str
    idempotency_key: str | None
    subject: str
    envelope_from: str
    recipients: list[str]
    raw: bytes
    #: the API key that queued it (None: no key), see postroom.senders
    created_by: int | None = None


@dataclass(slots=True)
class Claim:
    """A message a worker holds: deliver it, then report a :class:`Delivery`."""

    id: int
    token: str
    profile_id: int
    envelope_from: str
    recipients: list[str]
    raw: bytes
    attempts: int
    message_id: str


@dataclass(slots=True)
class Delivery:
    """What happened when a worker tried a claimed message."""

    claim: Claim
    outcome: Outcome
    code: int | None
    text: str
    worker: str
    duration_ms: float = 0.0
    recipient_results: dict[str, Any] | None = field(default=None)
    #: not tried at all (e.g. the database was away): queue it again, count no attempt
    release: bool = False


_COLUMNS = (
    "profile_id", "profile_name", "process", "status", "priority", "created_at", "due_at",
    "deadline_at", "attempts", "message_id", "idempotency_key", "subject", "envelope_from",
    "recipients", "created_by",
)  # fmt: skip


def stage(s: Session, items: Sequence[Enqueue]) -> builtins.list[int]:
    """Insert composed messages, queued, in the session's transaction; returns their ids
    in the order of ``items``. The caller commits."""
    if not items:
        return []
    unique = len({i.message_id for i in items}) == len(items)  # compose makes them so
    if unique and s.get_bind().dialect.name == "sqlite":
        return _stage_sqlite(s, items)
    return _stage_core(s, items, by_message_id=unique)


def _stage_core(s: Session, items: Sequence[Enqueue], *, by_message_id: bool) -> builtins.list[int]:
    """SQLAlchemy Core inserts (PostgreSQL, or Message-IDs that are not unique)."""
    if by_message_id:
        # Returned rows are matched to the items by their Message-ID: asking SQLAlchemy
        # for parameter order costs a sentinel on PostgreSQL and row-by-row on SQLite.
        rows = s.execute(insert(_MESSAGES).returning(_M.message_id, _M.id), _params(items))
        returned: dict[str, int] = {mid: id_ for mid, id_ in rows}
        ids = [returned[i.message_id] for i in items]
    else:
        ids = list(
            s.execute(
                insert(_MESSAGES).returning(_M.id, sort_by_parameter_order=True), _params(items)
            ).scalars()
        )
    s.execute(
        insert(_BODIES),
        [{"outbox_id": id_, "raw": i.raw} for id_, i in zip(ids, items, strict=True)],
    )
    return ids


def _params(items: Sequence[Enqueue]) -> builtins.list[dict[str, Any]]:
    now = utcnow()
    return [
        {
            "profile_id": i.profile_id, "profile_name": i.profile_name, "process": i.process,
            "status": OutboxStatus.QUEUED.value, "priority": i.priority, "created_at": now,
            "due_at": i.due_at, "deadline_at": i.deadline_at, "attempts": 0,
            "message_id": i.message_id, "idempotency_key": i.idempotency_key,
            "subject": i.subject, "envelope_from": i.envelope_from, "recipients": i.recipients,
            "created_by": i.created_by,
        }
        for i in items
    ]  # fmt: skip


def _stage_sqlite(s: Session, items: Sequence[Enqueue]) -> builtins.list[int]:
    """Multi-row ``INSERT … RETURNING`` statements on the driver, the columns' own bind
    processors applied once per distinct value (a batch shares its times and sender).

    SQLAlchemy's per-value processing cost more than SQLite's work (≈ 25 of 37 µs a
    message, docs/decisions/0004); the values stored are exactly the ones it would store.
    """
    conn = s.connection()
    dialect = conn.dialect
    when = _memo(_bind(_M.created_at, dialect))
    as_json = _addresses_json(_bind(_M.recipients, dialect))
    now = when(utcnow())
    queued = OutboxStatus.QUEUED.value
    rows = [
        (
            i.profile_id, i.profile_name, i.process, queued, i.priority, now, when(i.due_at),
            when(i.deadline_at), 0, i.message_id, i.idempotency_key, i.subject,
            i.envelope_from, as_json(i.recipients), i.created_by,
        )
        for i in items
    ]  # fmt: skip
    returned = dict(
        _insert_rows(conn, "outbox_messages", _COLUMNS, rows, returning="message_id, id")
    )
    ids = [returned[i.message_id] for i in items]
    _insert_rows(
        conn, "outbox_bodies", ("outbox_id", "raw"),
        [(id_, i.raw) for id_, i in zip(ids, items, strict=True)],
    )  # fmt: skip
    return ids


def _marks(n: int) -> str:
    """``n`` driver parameters, for ``IN (…)`` and ``VALUES (…)``."""
    return ",".join("?" * n)


def _lease_sqlite(
    s: Session, ids: builtins.list[int], token: str, now: datetime, lease_until: datetime
) -> None:
    """Lease ``ids`` in one statement that returns no rows (see :meth:`OutboxQueue.claim`).

    Only a message still due, or whose lease has expired, is taken: one cancelled or
    claimed since it was chosen keeps its state."""
    conn = s.connection()
    when = _bind(_M.lease_until, conn.dialect)
    conn.exec_driver_sql(
        "UPDATE outbox_messages SET status = ?, lease_owner = ?, lease_until = ?,"
        f" attempts = attempts + 1 WHERE id IN ({_marks(len(ids))})"
        f" AND ({READY_CONDITION} OR (status = ? AND lease_until < ?))",
        (OutboxStatus.SENDING.value, token, when(lease_until), *ids,
         OutboxStatus.SENDING.value, when(now)),
    )  # fmt: skip


def _sent_sqlite(s: Session, ids: builtins.list[int], token: str, now: datetime) -> int:
    """Mark ``ids`` sent where ``token`` still owns them, in one driver-level statement that
    returns nothing; returns how many it marked. SQLAlchemy's expanding ``IN`` cost more
    per message than SQLite's own work (docs/decisions/0007)."""
    conn = s.connection()
    when = _bind(_M.sent_at, conn.dialect)
    no_results = _bind(_M.recipient_results, conn.dialect)(None)  # as SQLAlchemy stores it
    result = conn.exec_driver_sql(
        "UPDATE outbox_messages SET status = ?, sent_at = ?, last_error = NULL,"
        " lease_owner = NULL, lease_until = NULL, last_code = 250, recipient_results = ?"
        f" WHERE id IN ({_marks(len(ids))}) AND lease_owner = ? AND status = ?",
        (OutboxStatus.SENT.value, when(now), no_results, *ids, token, OutboxStatus.SENDING.value),
    )
    return int(result.rowcount)


# Each row sqlite3 steps through gives up Python's lock and takes it back; with delivery
# busy on the event loop's thread that handover cost more than reading the row. So a
# claim's reads return one row each, aggregated by SQLite (docs/decisions/0006).
_CLAIMED_SQL = """
SELECT json_group_array(json_array(m.id, m.profile_id, m.envelope_from, json(m.recipients),
                                   m.attempts, m.message_id, length(b.raw)))
FROM outbox_messages AS m JOIN outbox_bodies AS b ON b.outbox_id = m.id
WHERE m.id IN ({ids}) AND m.lease_owner = ?
"""
# ids and bytes from one pass over the rows: both aggregates see them in the same order
_BODIES_SQL = """
SELECT json_group_array(outbox_id), CAST(group_concat(raw, '') AS BLOB) FROM outbox_bodies
WHERE outbox_id IN ({ids})
"""
_BODIES_PER_READ = 32 * 2**20  # bytes concatenated by one read (SQLite's limit is 1 GB)


def _read_claimed_sqlite(
    s: Session, ids: builtins.list[int], token: str
) -> builtins.list[tuple[Any, ...]]:
    """What delivery needs of the messages ``token`` leased, read after the lease committed
    (a read holds no lock)."""
    [(meta,)] = _driver_rows(s, _CLAIMED_SQL.format(ids=_marks(len(ids))), (*ids, token))
    taken = json.loads(meta)  # [id, profile, sender, recipients, attempts, Message-ID, size]
    size_of: dict[int, int] = {t[0]: t[-1] for t in taken}
    chunks: list[list[int]] = [[]]
    total = 0
    for id_, size in size_of.items():
        if chunks[-1] and total + size > _BODIES_PER_READ:
            chunks.append([])
            total = 0
        chunks[-1].append(id_)
        total += size
    raws: dict[int, bytes] = {}
    for chunk in filter(None, chunks):
        [(order, blob)] = _driver_rows(s, _BODIES_SQL.format(ids=_marks(len(chunk))), chunk)
        at = 0
        for id_ in json.loads(order):
            raws[id_] = blob[at : at + size_of[id_]]
            at += size_of[id_]
        if at != len(blob or b""):
            raise RuntimeError(f"outbox bodies read back {len(blob or b'')} bytes, not {at}")
    return [(*t[:-1], raws[t[0]]) for t in taken]


def _driver_rows(s: Session, sql: str, params: Sequence[Any]) -> builtins.list[Any]:
    """All rows of ``sql`` from the sqlite3 connection of the session's transaction, on the
    driver: SQLAlchemy's row-by-row fetching cost as much as the statements themselves."""
    cursor = s.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        rows: builtins.list[Any] = cursor.execute(sql, params).fetchall()
        return rows
    finally:
        cursor.close()


def _bind(column: Any, dialect: Any) -> Any:
    """The column's own bind processor on ``dialect`` (what SQLAlchemy would apply)."""
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    assert process is not None, column
    return process


def _addresses_json(process: Any) -> Any:
    """The JSON bind processor for lists of addresses, with the usual case — printable
    ASCII without quotes or backslashes, which JSON writes as they are — joined directly:
    the same text ``json.dumps`` makes, at a fraction of its cost."""

    def convert(addresses: builtins.list[str]) -> Any:
        for a in addresses:
            if not (a.isascii() and a.isprintable()) or '"' in a or "\\" in a:
                return process(addresses)
        return '["' + '", "'.join(addresses) + '"]' if addresses else "[]"

    return convert


def _memo(process: Any) -> Any:
    """A bind processor that converts each distinct value once."""
    seen: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        if value not in seen:
            seen[value] = process(value)
        return seen[value]

    return convert


def _insert_rows(
    conn: Any,
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    returning: str = "",
) -> builtins.list[tuple[Any, ...]]:
    """Multi-row INSERTs on the driver: one statement (one step) per chunk of rows rather
    than one per row, each of which gives up and re-takes the GIL with the write lock held.
    Returns the ``returning`` columns of every row inserted."""
    one = f"({_marks(len(columns))})"
    per = max(1, 30000 // len(columns))  # SQLite takes up to 32,766 parameters
    suffix = f" RETURNING {returning}" if returning else ""
    out: list[tuple[Any, ...]] = []
    for k in range(0, len(rows), per):
        chunk = rows[k : k + per]
        result = conn.exec_driver_sql(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            + ",".join([one] * len(chunk))
            + suffix,
            tuple(chain.from_iterable(chunk)),
        )
        if returning:
            out += [tuple(r) for r in result]
    return out


def _add(s: Session, items: Sequence[Enqueue]) -> builtins.list[int]:
    """Stage ``items`` (the caller commits); a repeated idempotency key, stored before or
    earlier in ``items``, gives the id first stored with it instead of a new message."""
    keys = [i.idempotency_key for i in items if i.idempotency_key]
    existing: dict[str, int] = {}
    if keys:
        existing = dict(
            s.execute(select(_M.idempotency_key, _M.id).where(_M.idempotency_key.in_(keys))).all()
        )
    fresh: list[Enqueue] = []
    first_of_key: dict[str, int] = {}  # key → index in fresh
    slots: list[int | tuple[int]] = []  # an existing id, or (index in fresh,)
    for item in items:
        key = item.idempotency_key
        if key and key in existing:
            slots.append(existing[key])
        elif key and key in first_of_key:
            slots.append((first_of_key[key],))
        else:
            if key:
                first_of_key[key] = len(fresh)
            slots.append((len(fresh),))
            fresh.append(item)
    ids = stage(s, fresh)
    return [ids[x[0]] if isinstance(x, tuple) else x for x in slots]


class OutboxQueue:
    def __init__(
        self, sessions: sessionmaker[Session], *, retry: RetryPolicy | None = None
    ) -> None:
        self._sessions = sessions
        self._retry = retry or RetryPolicy()

    # -- writing new messages ---------------------------------------------------------------

    def add(self, items: Sequence[Enqueue]) -> builtins.list[int]:
        """Store ``items`` in one transaction; returns their ids once committed.

        A repeated idempotency key returns the id of the message first stored with it
        (also within one batch).
        """
        with self._sessions() as s:
            try:
                ids = _add(s, items)
                s.commit()
            except IntegrityError:
                # two callers raced with the same idempotency key: the first one won
                s.rollback()
                if len(items) == 1 and items[0].idempotency_key:
                    found = s.scalar(
                        select(_M.id).where(_M.idempotency_key == items[0].idempotency_key)
                    )
                    if found is not None:
                        return [found]
                raise
            return ids

    def add_groups(
        self, groups: Sequence[Sequence[Enqueue]]
    ) -> builtins.list[builtins.list[int] | Exception]:
        """Store several callers' batches in ONE transaction (one commit, one ``fsync``):
        group commit. Returns each group's ids, in order, once committed.

        Each group stays all-or-nothing. A repeated idempotency key, within a group or
        across groups, yields the id first stored with it. When the shared transaction
        fails on a constraint (another process stored an idempotency key meanwhile), every
        group is stored again on its own, so one caller's conflict is not the others'; any
        other failure (the database went away) is raised: nothing of any group is stored.
        """
        flat = [item for group in groups for item in group]
        with self._sessions() as s:
            try:
                ids = _add(s, flat)
                s.commit()
            except IntegrityError:
                s.rollback()
                if len(groups) == 1:
                    return [self._add_or_error(groups[0])]
            else:
                out: list[builtins.list[int] | Exception] = []
                k = 0
                for group in groups:
                    out.append(ids[k : k + len(group)])
                    k += len(group)
                return out
        return [self._add_or_error(group) for group in groups]

    def _add_or_error(self, items: Sequence[Enqueue]) -> builtins.list[int] | Exception:
        try:
            return self.add(items)
        except IntegrityError as exc:
            return exc

    # -- workers ----------------------------------------------------------------------------

    def claim(self, worker: str, *, limit: int, lease_s: float) -> builtins.list[Claim]:
        """Take up to ``limit`` due messages of enabled profiles (and expired leases)."""
        with self._sessions() as s:
            return self._claims(s, *self._lease(s, worker, limit=limit, lease_s=lease_s))

    def complete_and_claim(
        self, deliveries: Sequence[Delivery], worker: str, *, limit: int, lease_s: float
    ) -> tuple[builtins.list[int], builtins.list[Claim]]:
        """:meth:`complete` then :meth:`claim`, in one transaction: one commit (and one
        ``fsync``) per batch instead of two, and on SQLite no second writer of the same
        worker waiting in the busy handler for the first (docs/decisions/0007).

        Returns the refused ids and the new claims. The outcomes commit with the lease;
        should reading the leased messages then fail, no claims are returned and their
        lease runs out, as when a worker dies after claiming."""
        with self._sessions() as s:
            refused = self._complete(s, deliveries)
            leased = self._lease(s, worker, limit=limit, lease_s=lease_s)
            try:
                return refused, self._claims(s, *leased)
            except DBAPIError as exc:
                log.warning(
                    "could not read %d leased message(s) (%s); they are retried when the "
                    "lease ends",
                    len(leased[0]),
                    type(exc.orig).__name__,
                )
                return refused, []

    def _lease(
        self, s: Session, worker: str, *, limit: int, lease_s: float
    ) -> tuple[builtins.list[int], str, builtins.list[tuple[Any, ...]] | None]:
        """Choose and lease up to ``limit`` messages, and commit ``s``. Returns the ids,
        the lease's owner token and, where the database returned them with the lease
        (PostgreSQL), the rows :meth:`_claims` needs."""
        now = utcnow()
        token = f"{worker}:{uuid.uuid4().hex[:12]}"
        ids = self._choose(s, now, limit)
        if not ids:
            s.commit()
            return [], token, []
        lease_until = now + timedelta(seconds=lease_s)
        if s.get_bind().dialect.name == "sqlite":
            # The write lock is held only for one UPDATE that returns nothing; the rows
            # are read after the commit. Returning 500 rows inside the transaction gave
            # up and re-took the GIL once a row, and with delivery busy on the event
            # loop that kept other writers (send()) waiting tens of milliseconds
            # (docs/decisions/0005).
            _lease_sqlite(s, ids, token, now, lease_until)
            s.commit()
            return ids, token, None
        rows = s.execute(
            update(_MESSAGES)
            .where(_M.id.in_(ids))
            .values(
                status=OutboxStatus.SENDING.value, lease_owner=token,
                lease_until=lease_until, attempts=_M.attempts + 1,
            )
            .returning(
                _M.id, _M.profile_id, _M.envelope_from, _M.recipients, _M.attempts,
                _M.message_id,
            )
        ).all()  # fmt: skip
        bodies = dict(
            s.execute(
                select(_BODIES.c.outbox_id, _BODIES.c.raw).where(_BODIES.c.outbox_id.in_(ids))
            ).all()
        )
        s.commit()
        return ids, token, [(*r, bodies[r[0]]) for r in rows]

    @staticmethod
    def _claims(
        s: Session,
        ids: builtins.list[int],
        token: str,
        taken: builtins.list[tuple[Any, ...]] | None,
    ) -> builtins.list[Claim]:
        """The claims of a lease, in the order they were chosen (priority, then due time);
        on SQLite read now, outside the write lock."""
        if taken is None:
            taken = _read_claimed_sqlite(s, ids, token)
        rank = {id_: k for k, id_ in enumerate(ids)}
        claims = [
            Claim(id_, token, profile_id, sender, recipients, raw, attempts, mid)
            for id_, profile_id, sender, recipients, attempts, mid, raw in taken
        ]
        claims.sort(key=lambda c: rank[c.id])
        return claims

    @staticmethod
    def _choose(s: Session, now: datetime, limit: int) -> builtins.list[int]:
        """Ids to claim: expired leases first (their worker died), then ready messages by
        priority and due time, walking ``ix_outbox_ready`` and stopping after ``limit``."""
        if s.get_bind().dialect.name == "sqlite":
            # SQLite's planner, without statistics, would sort every due row or read every
            # message; INDEXED BY makes it walk the right index and stop after ``limit``
            when = _bind(_M.due_at, s.get_bind().dialect)
            ids = [r[0] for r in _driver_rows(s, _SQLITE_EXPIRED_SQL, (when(now), limit))]
            if len(ids) < limit:
                blocked = [r[0] for r in _driver_rows(s, _SQLITE_BLOCKED_SQL, ())]
                sql = _SQLITE_READY_SQL.format(
                    blocked=f" AND profile_id NOT IN ({_marks(len(blocked))})" if blocked else ""
                )
                [(chosen,)] = _driver_rows(
                    s,
                    f"SELECT json_group_array(id) FROM ({sql})",
                    (when(now), *blocked, limit - len(ids)),
                )
                ids += json.loads(chosen)
            return ids
        expired = (
            select(_M.id)
            .join(Profile, Profile.id == _M.profile_id)
            .where(
                _M.status == OutboxStatus.SENDING.value,
                _M.lease_until < now,
                Profile.enabled.is_(True),
                _NOT_PAUSED,
            )
            .order_by(_M.lease_until)
            .limit(limit)
            .with_for_update(skip_locked=True, of=_MESSAGES)
        )
        ids = list(s.scalars(expired))
        if len(ids) < limit:
            ready = (
                select(_M.id)
                .join(Profile, Profile.id == _M.profile_id)
                .where(_READY, _M.due_at <= now, Profile.enabled.is_(True), _NOT_PAUSED)
                .order_by(_M.priority.desc(), _M.due_at)
                .limit(limit - len(ids))
                .with_for_update(skip_locked=True, of=_MESSAGES)
            )
            ids += s.scalars(ready)
        return ids

    def extend(self, claims: Sequence[Claim], *, lease_s: float) -> int:
        """Renew the lease of claims still owned; returns how many were renewed."""
        if not claims:
            return 0
        until = utcnow() + timedelta(seconds=lease_s)
        with self._sessions() as s:
            count = 0
            for token in {c.token for c in claims}:
                result = s.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.id.in_([c.id for c in claims if c.token == token]),
                        OutboxMessage.lease_owner == token,
                        OutboxMessage.status == OutboxStatus.SENDING.value,
                    )
                    .values(lease_until=until)
                )
                count += result.rowcount  # type: ignore[attr-defined]
            s.commit()
            return count

    def release(self, claims: Sequence[Claim], *, due_at: datetime | None = None) -> int:
        """Give claims back untried (shutdown, rate limit): queued again, attempt not counted."""
        if not claims:
            return 0
        with self._sessions() as s:
            count = 0
            for c in claims:
                result = s.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.id == c.id,
                        OutboxMessage.lease_owner == c.token,
                        OutboxMessage.status == OutboxStatus.SENDING.value,
                    )
                    .values(
                        status=OutboxStatus.QUEUED.value,
                        lease_owner=None,
                        lease_until=None,
                        attempts=OutboxMessage.attempts - 1,
                        due_at=due_at or utcnow(),
                    )
                )
                count += result.rowcount  # type: ignore[attr-defined]
            s.commit()
            return count

    def complete(self, deliveries: Sequence[Delivery]) -> builtins.list[int]:
        """Record outcomes in one transaction; returns the ids whose write was refused
        because the worker no longer owned them (its lease expired and was taken over)."""
        with self._sessions() as s:
            refused = self._complete(s, deliveries)
            s.commit()
            return refused

    def _complete(self, s: Session, deliveries: Sequence[Delivery]) -> builtins.list[int]:
        """Write outcomes in ``s``'s transaction, which must hold nothing else yet (a lost
        lease on SQLite rolls it back); the caller commits. Returns the refused ids."""
        if not deliveries:
            return []
        now = utcnow()
        refused: builtins.list[int] | None = None
        if s.get_bind().dialect.name == "sqlite":
            # As in claim (docs/decisions/0005): no rows come back inside the write
            # lock. When every update touched its row, the counts say all were still
            # ours (the usual case).
            refused = self._record(s, deliveries, now, counted=True)
            if refused is None:
                s.rollback()  # a lease was lost meanwhile: find out which ones, below
        if refused is None:
            refused = self._record(s, deliveries, now, counted=False) or []
        # a bounce notice can be stored before its send is recorded: it applies now
        lost = set(refused)
        apply_held(s, [
            d.claim.id for d in deliveries
            if d.outcome is Outcome.SENT and not d.release and d.claim.id not in lost
        ])  # fmt: skip
        return refused

    def _record(
        self, s: Session, deliveries: Sequence[Delivery], now: datetime, *, counted: bool
    ) -> builtins.list[int] | None:
        """Write outcomes and attempts; the refused ids, or (``counted``) None when a
        statement touched fewer rows than it should have."""
        refused: list[int] = []
        # the common case — a plain 250, no per-recipient refusals — is one statement per owner
        plain: dict[str, list[Delivery]] = {}
        others = []
        for d in deliveries:
            if (
                d.outcome is Outcome.SENT
                and d.code == 250
                and not d.release
                and not d.recipient_results
            ):
                plain.setdefault(d.claim.token, []).append(d)
            else:
                others.append(d)
        attempts = [d for mine in plain.values() for d in mine]
        sqlite = s.get_bind().dialect.name == "sqlite"
        for token, mine in plain.items():
            ids = [d.claim.id for d in mine]
            if counted and sqlite:
                if _sent_sqlite(s, ids, token, now) != len(ids):
                    return None
                continue
            statement = (
                update(_MESSAGES)
                .where(
                    _M.id.in_(ids),
                    _M.lease_owner == token,
                    _M.status == OutboxStatus.SENDING.value,
                )
                .values(
                    status=OutboxStatus.SENT.value, sent_at=now, last_error=None,
                    lease_owner=None, lease_until=None, last_code=250, recipient_results=None,
                )
            )  # fmt: skip
            if counted:
                if s.execute(statement).rowcount != len(ids):  # type: ignore[attr-defined]
                    return None
                continue
            done = set(s.scalars(statement.returning(_M.id)))
            refused += [i for i in ids if i not in done]
        if refused:
            lost = set(refused)
            attempts = [d for d in attempts if d.claim.id not in lost]
        for d in others:
            if self._complete_one(s, d, now):
                if not d.release:
                    attempts.append(d)
            elif counted:
                return None
            else:
                refused.append(d.claim.id)
        if attempts:
            _insert_attempts(s, attempts, now)
        # attempts: the outcomes written, so a lost lease doesn't count as the profile's use
        _mark_used(s, {d.claim.profile_id for d in attempts if d.outcome is Outcome.SENT}, now)
        return refused

    def _complete_one(self, s: Session, d: Delivery, now: datetime) -> bool:
        c = d.claim
        values: dict[str, Any] = {
            "lease_owner": None,
            "lease_until": None,
            "last_code": d.code,
            "recipient_results": d.recipient_results,
        }
        if d.release:
            values |= {
                "status": OutboxStatus.QUEUED.value,
                "attempts": OutboxMessage.attempts - 1,
                "due_at": now + timedelta(seconds=1),
            }
        elif d.outcome is Outcome.SENT:
            values |= {"status": OutboxStatus.SENT.value, "sent_at": now, "last_error": None}
        else:
            deadline = s.scalar(select(_M.deadline_at).where(_M.id == c.id))
            decision = next_attempt(
                c.attempts, d.code if d.outcome is Outcome.PERMANENT else None,
                now=now, deadline=deadline or now, policy=self._retry,
            )  # fmt: skip
            if isinstance(decision, GiveUp):
                values |= {
                    "status": OutboxStatus.FAILED.value,
                    "last_error": f"{d.text} — gave up: {decision.reason}",
                }
            else:
                values |= {
                    "status": OutboxStatus.RETRYING.value,
                    "due_at": decision.at,
                    "last_error": d.text,
                }
        result = s.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == c.id,
                OutboxMessage.lease_owner == c.token,
                OutboxMessage.status == OutboxStatus.SENDING.value,
            )
            .values(**values)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def purge(self, *, before: datetime, chunk: int = 1000) -> int:
        """Delete messages in a final state (sent, failed, bounced, cancelled) queued before
        ``before``, with their bodies and attempts; returns how many. Works in chunks, so
        writers are never held back for long; queued and in-flight mail is never touched."""
        final = [s.value for s in OutboxStatus if s.final]
        total = 0
        while True:
            with self._sessions() as s:
                ids = list(
                    s.scalars(
                        select(_M.id)
                        .where(_M.created_at < before, _M.status.in_(final))
                        .limit(chunk)
                    )
                )
                if not ids:
                    return total
                # bodies and attempts go by ON DELETE CASCADE
                s.execute(delete(_MESSAGES).where(_M.id.in_(ids), _M.status.in_(final)))
                s.commit()
            total += len(ids)

    # -- reading and control ----------------------------------------------------------------

    def get(self, id: int, /, *, owner: int | None = None) -> OutboxRead:
        """One message with its attempts; with ``owner``, only if that API key created it
        (another's is "not found" alike: its existence is not told either)."""
        with self._sessions() as s:
            row = s.get(OutboxMessage, id)
            if row is None or (owner is not None and row.created_by != owner):
                raise NotFound(f"No outbox message with id {id}.")
            attempts = s.scalars(
                select(OutboxAttempt)
                .where(OutboxAttempt.outbox_id == id)
                .order_by(OutboxAttempt.id)
            )
            return OutboxRead(
                **_summary(row).model_dump(),
                deadline_at=row.deadline_at,
                recipient_results=row.recipient_results,
                history=[AttemptRead.model_validate(a, from_attributes=True) for a in attempts],
            )

    def list(self, **filters: Any) -> builtins.list[OutboxSummary]:
        """Newest first, filtered (see :meth:`list_query`)."""
        with self._sessions() as s:
            return [_summary(r) for r in s.scalars(self.list_query(**filters))]

    @staticmethod
    def list_query(
        *,
        status: str | None = None,
        profile: str | None = None,
        process: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        owner: int | None = None,
        search: str | None = None,
        statuses: Sequence[str] | None = None,
    ) -> Select[OutboxMessage]:
        """The messages with ``status`` (or one of ``statuses``), of ``profile`` or
        ``process``, created in [``since``, ``until``) (by the API key ``owner``), matching
        ``search`` (see :mod:`postroom.outbox.search`), newest first, at most ``limit``
        (1 to 10,000)."""
        conditions = _filters(
            status=status, profile=profile, process=process, since=since, until=until,
            owner=owner, statuses=statuses,
        )  # fmt: skip
        term = search_term(search, field="search")
        if term is not None:
            return searched(term, conditions, max(1, min(limit, 10_000)))
        return (
            select(OutboxMessage)
            .where(*conditions)
            .order_by(OutboxMessage.id.desc())
            .limit(max(1, min(limit, 10_000)))
        )

    def bulk_count(self, action: str, **filters: Any) -> int:
        """How many messages :meth:`bulk` would act on now."""
        query = self._bulk_query(action, filters, BULK_MAX)
        with self._sessions() as s:
            return int(s.scalar(select(func.count()).select_from(query.subquery())) or 0)

    def bulk(self, action: str, *, actor: str, **filters: Any) -> int:
        """Retry (``action="retry"``) or cancel every message the filters match that can
        be, at most :data:`BULK_MAX`, in one transaction with one audit entry naming the
        filters and the count. Returns the count."""
        found = self._bulk_query(action, filters, BULK_MAX).subquery()
        query = select(found.c.id)
        now = utcnow()
        values: dict[str, Any] = (
            {
                "status": OutboxStatus.QUEUED.value,
                "due_at": now,
                "deadline_at": now + DEFAULT_DEADLINE,
            }
            if action == "retry"
            else {"status": OutboxStatus.CANCELLED.value}
        )
        allowed = RETRY_FROM if action == "retry" else DUE_STATES
        with self._sessions() as s:
            ids = list(s.scalars(query))
            count = 0
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                result = s.execute(
                    update(_MESSAGES)
                    .where(_M.id.in_(chunk), _M.status.in_(allowed))
                    .values(**values)
                )
                count += int(result.rowcount)  # type: ignore[attr-defined]
            record(
                s, actor=actor, action=f"bulk_{action}", target_type="outbox",
                target=f"{count} message(s)",
                details={"filter": describe(filters), "count": count},
            )  # fmt: skip
            s.commit()
        return count

    def _bulk_query(self, action: str, filters: dict[str, Any], limit: int) -> Select[Any]:
        if action not in ("retry", "cancel"):
            raise ValidationError(FieldError("action", "must be retry or cancel"))
        allowed = RETRY_FROM if action == "retry" else DUE_STATES
        status = filters.get("status")
        if status and status not in allowed:
            verb = "retried" if action == "retry" else "cancelled"
            raise ValidationError(
                FieldError("status", f"only {', '.join(allowed)} messages can be {verb}")
            )
        return self.list_query(**{**filters, "limit": limit}, statuses=None if status else allowed)

    def counts(self) -> dict[str, int]:
        with self._sessions() as s:
            rows = s.execute(
                select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
            ).all()
            return {status: n for status, n in rows}

    def due_or_in_flight(self, *, within_s: float = 5.0) -> int:
        """Messages of enabled profiles due within ``within_s``, plus those being sent.

        The horizon covers messages a worker gave back for a moment (no free connection
        slot), so a draining worker does not stop just before they are due again.
        """
        now = utcnow() + timedelta(seconds=within_s)
        # two counts, each on its own index: the ready one, and (profile, status)
        counted = (
            select(func.count())
            .select_from(OutboxMessage)
            .where(_M.profile_id.in_(select(Profile.id).where(Profile.enabled.is_(True))))
            .where(_NOT_PAUSED)
        )
        with self._sessions() as s:
            due = s.scalar(counted.where(_READY, _M.due_at <= now)) or 0
            sending = s.scalar(counted.where(_M.status == OutboxStatus.SENDING.value)) or 0
            return int(due) + int(sending)

    def oldest_due_age_s(self) -> float:
        with self._sessions() as s:
            oldest = s.scalar(select(func.min(OutboxMessage.due_at)).where(_READY))
        if oldest is None:
            return 0.0
        if oldest.tzinfo is None:
            from datetime import UTC

            oldest = oldest.replace(tzinfo=UTC)
        return max(0.0, (utcnow() - oldest).total_seconds())

    def retry(self, id: int, /) -> OutboxSummary:
        """Send a failed or cancelled message again now, with a fresh deadline."""
        with self._sessions() as s:
            row = s.get(OutboxMessage, id)
            if row is None:
                raise NotFound(f"No outbox message with id {id}.")
            if row.status not in RETRY_FROM:
                raise Conflict(
                    f"Message {id} is {row.status}; only failed, cancelled, bounced or retrying messages can be retried."
                )
            now = utcnow()
            row.status = OutboxStatus.QUEUED.value
            row.due_at = now
            row.deadline_at = now + DEFAULT_DEADLINE
            s.commit()
            return _summary(row)

    def cancel(self, id: int, /) -> OutboxSummary:
        """Stop a message that has not been sent yet."""
        with self._sessions() as s:
            result = s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == id, OutboxMessage.status.in_(DUE_STATES))
                .values(status=OutboxStatus.CANCELLED.value)
            )
            s.commit()
            row = s.get(OutboxMessage, id)
            if row is None:
                raise NotFound(f"No outbox message with id {id}.")
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise Conflict(
                    f"Message {id} is {row.status}; only queued or retrying messages can be cancelled."
                )
            return _summary(row)


_ATTEMPT_COLUMNS = (
    "outbox_id", "at", "worker", "outcome", "code", "text", "recipient_results", "duration_ms",
)  # fmt: skip


def _insert_attempts(s: Session, deliveries: Sequence[Delivery], now: datetime) -> None:
    """One attempt row per delivery, all at ``now``. On SQLite multi-row inserts on the
    driver, rows built straight from the deliveries with the columns' bind processors
    applied once per distinct value, as in :func:`stage`."""
    if s.get_bind().dialect.name != "sqlite":
        s.execute(insert(_ATTEMPTS), [_attempt_row(d, now) for d in deliveries])
        return
    conn = s.connection()
    dialect = conn.dialect
    as_json = _bind(_ATTEMPTS.c.recipient_results, dialect)
    at = _bind(_ATTEMPTS.c.at, dialect)(now)
    null = as_json(None)  # what almost every attempt stores: convert it once
    rows = [
        (
            d.claim.id, at, d.worker, d.outcome.value, d.code, d.text[:2000],
            null if d.recipient_results is None else as_json(d.recipient_results),
            round(d.duration_ms, 1),
        )
        for d in deliveries
    ]  # fmt: skip
    _insert_rows(conn, "outbox_attempts", _ATTEMPT_COLUMNS, rows)


def _mark_used(s: Session, profile_ids: set[int], now: datetime) -> None:
    """Write the profiles' ``last_used_at``: one statement per batch, not per message, and
    only when the stored value is older than :data:`LAST_USED_PRECISION` — most batches of
    a busy profile write nothing, so workers don't queue on the profile's row."""
    if not profile_ids:
        return
    s.execute(
        update(_PROFILES)
        .where(
            _PROFILES.c.id.in_(sorted(profile_ids)),
            or_(
                _PROFILES.c.last_used_at.is_(None),
                _PROFILES.c.last_used_at < now - LAST_USED_PRECISION,
            ),
        )
        .values(last_used_at=now)
    )


def _attempt_row(d: Delivery, now: datetime) -> dict[str, Any]:
    return {
        "outbox_id": d.claim.id,
        "at": now,
        "worker": d.worker,
        "outcome": d.outcome.value,
        "code": d.code,
        "text": d.text[:2000],
        "recipient_results": d.recipient_results,
        "duration_ms": round(d.duration_ms, 1),
    }


def _summary(row: OutboxMessage) -> OutboxSummary:
    return OutboxSummary(
        id=row.id,
        status=OutboxStatus(row.status),
        profile=row.profile_name,
        process=row.process,
        subject=row.subject,
        recipients=list(row.recipients),
        message_id=row.message_id,
        attempts=row.attempts,
        created_at=row.created_at,
        due_at=row.due_at,
        sent_at=row.sent_at,
        last_code=row.last_code,
        last_error=row.last_error,
    )
