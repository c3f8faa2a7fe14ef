"""Engine and session factory; Alembic migrations run programmatically."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["make_engine", "make_sessionmaker", "upgrade"]

_MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_PAGE_SIZE = 16384


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # Set before anything is written, so it applies to a new database only (an existing
    # one keeps its page size). 16 KiB pages hold several composed messages each: with
    # 4 KiB pages every ≈ 2 KB body took a page of its own, and writing it to the WAL and
    # checkpointing it cost more than the rest of storing a message
    # (docs/decisions/0006-outbox-storage.md).
    cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    # WAL lets readers run beside the single writer; FULL makes a returned send() durable
    # across power loss, which is the outbox's whole promise.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    # checkpoint when the WAL reaches ≈ 32 MB (the setting counts pages of this database)
    page_size = cur.execute("PRAGMA page_size").fetchone()[0]
    cur.execute(f"PRAGMA wal_autocheckpoint={32 * 2**20 // page_size}")
    cur.close()


def private_sqlite_file(path: Path) -> None:
    """Make the database file readable by its owner only, before SQLite opens it.

    SQLite creates it 0644 (less the umask) and gives its ``-wal`` and ``-shm`` files the
    database file's mode; they hold outbox bodies (reset links), inbound mail and the audit
    log. A new file is created 0600 (in a 0700 directory when postroom creates that too);
    an existing one that others can read is tightened, with its companions.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for name in (path, *(Path(f"{path}{suffix}") for suffix in ("-wal", "-shm", "-journal"))):
            try:
                mode = stat.S_IMODE(name.stat().st_mode)
                if mode & 0o077:
                    name.chmod(mode & 0o700)
            except OSError:  # gone meanwhile, or another user's file: SQLite will say
                continue
    else:
        os.close(fd)


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` (``sqlite:///…`` or ``postgresql+psycopg://…``)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1].split("?", 1)[0]
        if path and path != ":memory:" and not path.startswith("file:"):
            private_sqlite_file(Path(path))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Bring the schema to ``revision`` (idempotent). Every branch head by default:
    features add their tables on branches from a common base."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def current_heads(engine: Engine) -> list[str]:
    """The applied revision of every migration branch."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return sorted(MigrationContext.configure(conn).get_current_heads())
