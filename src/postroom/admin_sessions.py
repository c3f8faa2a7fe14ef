"""Signed-in web sessions, kept in the database.

The browser holds a signed cookie naming a session id; the session itself is a row here,
so every ``postroom serve`` of one database, and the same one after a restart, agrees on
which sessions are alive. Signing out deletes the row; a new password (set by any path,
reset link included) deletes every row of the account, and deleting an account deletes its
rows with it. Only a SHA-256 hash of the id is stored: a copy of the database does not
hold cookies that could be replayed.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from postroom.db.tables import Admin, Base, utcnow
from postroom.profiles.service import name_key

__all__ = ["AdminSession", "AdminSessions", "end_sessions_of"]


class AdminSession(Base):
    """One signed-in browser: the hash of its session id, whose it is, until when."""

    __tablename__ = "admin_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8")).hexdigest()


def end_sessions_of(s: Session, admin_id: int) -> None:
    """Delete every session of one account, inside the caller's transaction (a new
    password must not leave an old session alive, and must not commit without this)."""
    s.execute(delete(AdminSession).where(AdminSession.admin_id == admin_id))


class AdminSessions:
    """Start, look up and end web sessions; ``max_age`` bounds every session's life."""

    def __init__(self, sessions: sessionmaker[Session], *, max_age: timedelta) -> None:
        self._sessions = sessions
        self.max_age = max_age

    def start(self, sid: str, username: str, /) -> bool:
        """Record a new session of ``username``; False when there is no such account.

        Expired rows of the same account are removed on the way, so the table holds
        roughly the live sessions.
        """
        now = utcnow()
        with self._sessions() as s:
            admin_id = s.scalar(
                select(Admin.id).where(
                    Admin.username_key == name_key(username), Admin.disabled_at.is_(None)
                )
            )
            if admin_id is None:
                return False
            s.execute(
                delete(AdminSession).where(
                    AdminSession.admin_id == admin_id, AdminSession.expires_at <= now
                )
            )
            s.add(AdminSession(id_hash=_hash(sid), admin_id=admin_id, created_at=now,
                               expires_at=now + self.max_age))  # fmt: skip
            s.commit()
            return True

    def current(self, sid: str, /) -> tuple[str, str] | None:
        """The (username, role) of a live session, or None when it ended or expired.

        The role is read from the account, so a changed role applies at once.
        """
        with self._sessions() as s:
            row = s.execute(
                select(Admin.username, Admin.role)
                .join(AdminSession, AdminSession.admin_id == Admin.id)
                .where(
                    AdminSession.id_hash == _hash(sid),
                    AdminSession.expires_at > utcnow(),
                    Admin.disabled_at.is_(None),
                )
            ).first()
            return (row[0], row[1]) if row is not None else None

    def end(self, sid: str, /) -> None:
        """End one session (sign-out)."""
        with self._sessions() as s:
            s.execute(delete(AdminSession).where(AdminSession.id_hash == _hash(sid)))
            s.commit()

    def end_all(self, username: str, /) -> None:
        """End every session of ``username``."""
        with self._sessions() as s:
            admin_id = s.scalar(select(Admin.id).where(Admin.username_key == name_key(username)))
            if admin_id is not None:
                end_sessions_of(s, admin_id)
                s.commit()
