"""Per-profile delivery limits shared by every worker, kept in the database.

``rate_limit_per_minute``: a fixed one-minute window per profile; workers reserve sends
with a compare-and-swap on the window's count. ``max_connections``: numbered slots per
profile, leased by the worker that holds a connection open.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from postroom.db.tables import ConnectionSlot, RateWindow, utcnow

__all__ = ["Limits", "window_of"]


def window_of(now: datetime) -> int:
    return int(now.timestamp() // 60)


class Limits:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def reserve(self, profile_id: int, wanted: int, per_minute: int | None) -> int:
        """How many of ``wanted`` sends may go now (all of them when there is no limit)."""
        if per_minute is None or wanted <= 0:
            return wanted
        window = window_of(utcnow())
        with self._sessions() as s:
            for _ in range(20):
                row = s.get(RateWindow, (profile_id, window))
                if row is None:
                    try:
                        s.add(RateWindow(profile_id=profile_id, window=window, count=0))
                        s.commit()
                    except IntegrityError:
                        s.rollback()
                    continue
                used = row.count
                grant = max(0, min(wanted, per_minute - used))
                if grant == 0:
                    return 0
                result = s.execute(
                    update(RateWindow)
                    .where(
                        RateWindow.profile_id == profile_id,
                        RateWindow.window == window,
                        RateWindow.count == used,
                    )
                    .values(count=used + grant)
                )
                s.commit()
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    return grant
                s.expire_all()
        return 0

    def acquire_slot(
        self, profile_id: int, max_connections: int, owner: str, *, lease_s: float
    ) -> int | None:
        """A free connection slot number for ``owner``, or None when all are taken."""
        now = utcnow()
        with self._sessions() as s:
            existing = set(
                s.scalars(
                    select(ConnectionSlot.slot).where(ConnectionSlot.profile_id == profile_id)
                )
            )
            missing = [i for i in range(max_connections) if i not in existing]
            if missing:
                for i in missing:
                    s.add(ConnectionSlot(profile_id=profile_id, slot=i))
                try:
                    s.commit()
                except IntegrityError:
                    s.rollback()
            for slot in range(max_connections):
                result = s.execute(
                    update(ConnectionSlot)
                    .where(
                        ConnectionSlot.profile_id == profile_id,
                        ConnectionSlot.slot == slot,
                        or_(ConnectionSlot.owner.is_(None), ConnectionSlot.lease_until < now),
                    )
                    .values(owner=owner, lease_until=now + timedelta(seconds=lease_s))
                )
                s.commit()
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    return slot
        return None

    def renew_slots(self, worker: str, *, lease_s: float) -> None:
        """Extend every slot a worker's connections hold (owners are ``worker:conn``)."""
        with self._sessions() as s:
            s.execute(
                update(ConnectionSlot)
                .where(ConnectionSlot.owner.startswith(worker + ":", autoescape=True))
                .values(lease_until=utcnow() + timedelta(seconds=lease_s))
            )
            s.commit()

    def release_slot(self, profile_id: int, slot: int, owner: str) -> None:
        with self._sessions() as s:
            s.execute(
                update(ConnectionSlot)
                .where(
                    ConnectionSlot.profile_id == profile_id,
                    ConnectionSlot.slot == slot,
                    ConnectionSlot.owner == owner,
                )
                .values(owner=None, lease_until=None)
            )
            s.commit()
