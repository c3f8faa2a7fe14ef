"""The web UI's own rows in ``system_settings``: its session secret and the setup token.

This is the only module of the web package that touches the database; it holds nothing
but these two installation-wide values.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from postroom.db.tables import SystemSetting

__all__ = [
    "delete_setting",
    "get_or_create_setting",
    "get_setting",
    "set_setting",
    "take_setting",
]


def get_setting(sessions: sessionmaker[Session], key: str) -> str | None:
    """The value stored under ``key``, or None."""
    with sessions() as s:
        row = s.get(SystemSetting, key)
        return row.value if row is not None else None


def set_setting(sessions: sessionmaker[Session], key: str, value: str) -> None:
    """Store ``value`` under ``key``, replacing what was there."""
    with sessions() as s:
        row = s.get(SystemSetting, key)
        if row is None:
            s.add(SystemSetting(key=key, value=value))
        else:
            row.value = value
        s.commit()


def get_or_create_setting(sessions: sessionmaker[Session], key: str, value: str) -> str:
    """The value under ``key``; stores ``value`` first if there is none.

    Two processes racing here agree on one value: the loser's insert fails on the primary
    key and it reads the winner's.
    """
    with sessions() as s:
        row = s.get(SystemSetting, key)
        if row is not None and row.value:
            return row.value
        if row is None:
            s.add(SystemSetting(key=key, value=value))
        else:
            row.value = value
        try:
            s.commit()
        except IntegrityError:
            s.rollback()
            stored = s.get(SystemSetting, key)
            if stored is None or not stored.value:
                raise
            return stored.value
        return value


def delete_setting(sessions: sessionmaker[Session], key: str) -> bool:
    """Remove ``key``; True when it existed."""
    with sessions() as s:
        row = s.get(SystemSetting, key)
        if row is None:
            return False
        s.delete(row)
        s.commit()
        return True


def take_setting(sessions: sessionmaker[Session], key: str, expected: str) -> bool:
    """Delete ``key`` only if it still holds ``expected``; True for exactly one caller."""
    with sessions() as s:
        result = s.execute(
            delete(SystemSetting).where(SystemSetting.key == key, SystemSetting.value == expected)
        )
        s.commit()
        return bool(getattr(result, "rowcount", 0) == 1)
