"""Throttles kept in the database: failed sign-ins, wrong API keys, reset requests.

Every ``postroom serve`` of one database counts into the same rows, so N processes behind a
load balancer throttle as one and a restart forgets nothing. A count is a row per event
(the hash of what is counted, never the username or address itself) within a sliding
window; rows older than the longest window are deleted now and then.

The limits (named here, documented in docs/security.md):

- :data:`SIGN_IN_PAIR`: failed sign-ins of one account from one address;
- :data:`SIGN_IN_ACCOUNT`: failed sign-ins of one account from anywhere (rotating
  addresses, or a botnet, does not get more guesses at one password);
- :data:`FAILED_AUTH_ADDRESS`: failed sign-ins *and* wrong API keys from one address,
  whatever username or key they name (spraying many accounts or keys);
- :data:`RESET_REQUESTS_ADDRESS`: password reset requests from one address;
- :data:`CONNECTION_TESTS`: connection tests of one caller (an API key, a web user),
  through REST and the web UI alike.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Index, Integer, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from postroom.db.tables import Base, utcnow

__all__ = [
    "CONNECTION_TESTS",
    "FAILED_AUTH_ADDRESS",
    "RESET_REQUESTS_ADDRESS",
    "SIGN_IN_ACCOUNT",
    "SIGN_IN_PAIR",
    "Limit",
    "ThrottleEvent",
    "Throttles",
    "minutes",
    "sign_in_checks",
]


@dataclass(frozen=True)
class Limit:
    """At most ``count`` events per counted value within ``window``."""

    scope: str
    count: int
    window: timedelta


SIGN_IN_PAIR = Limit("sign-in", 5, timedelta(minutes=15))
SIGN_IN_ACCOUNT = Limit("sign-in-account", 20, timedelta(minutes=15))
FAILED_AUTH_ADDRESS = Limit("failed-auth-address", 50, timedelta(minutes=15))
RESET_REQUESTS_ADDRESS = Limit("reset-address", 5, timedelta(minutes=15))
CONNECTION_TESTS = Limit("connection-tests", 10, timedelta(minutes=1))

_LONGEST = max(
    limit.window
    for limit in (SIGN_IN_PAIR, SIGN_IN_ACCOUNT, FAILED_AUTH_ADDRESS, RESET_REQUESTS_ADDRESS)
)
_SWEEP_EVERY_S = 60.0

Check = tuple[Limit, str]


class ThrottleEvent(Base):
    """One counted event (a failed sign-in, a wrong key, a reset request)."""

    __tablename__ = "throttle_events"
    __table_args__ = (Index("ix_throttle_events_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(30))
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(index=True)


def _key(limit: Limit, value: str) -> str:
    return hashlib.sha256(f"{limit.scope}\0{value}".encode()).hexdigest()


def sign_in_checks(username: str, address: str) -> list[Check]:
    """What a sign-in attempt of ``username`` from ``address`` counts against."""
    user = username.strip().casefold()
    return [
        (SIGN_IN_PAIR, f"{user}\0{address}"),
        (SIGN_IN_ACCOUNT, user),
        (FAILED_AUTH_ADDRESS, address),
    ]


def minutes(wait_s: float) -> int:
    """``wait_s`` rounded up to whole minutes, for messages."""
    return max(1, math.ceil(wait_s / 60))


class Throttles:
    """Counts in the database; ``clock`` is for tests (it must return aware UTC times)."""

    def __init__(
        self, sessions: sessionmaker[Session], *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._swept = float("-inf")

    def _wait(self, s: Session, limit: Limit, value: str, now: datetime) -> float:
        # the count-th newest event in the window: the limit lifts when it leaves the window
        oldest_counted = s.scalar(
            select(ThrottleEvent.at)
            .where(ThrottleEvent.key == _key(limit, value), ThrottleEvent.at > now - limit.window)
            .order_by(ThrottleEvent.at.desc())
            .offset(limit.count - 1)
            .limit(1)
        )
        if oldest_counted is None:
            return 0.0
        return max(0.0, (oldest_counted + limit.window - now).total_seconds())

    def wait_s(self, *checks: Check) -> float:
        """Seconds until none of ``checks`` is over its limit; 0 when all may go now."""
        now = self._clock()
        with self._sessions() as s:
            return max((self._wait(s, limit, value, now) for limit, value in checks), default=0.0)

    def hit(self, *checks: Check) -> None:
        """Count one event against each of ``checks``."""
        now = self._clock()
        with self._sessions() as s:
            for limit, value in checks:
                s.add(ThrottleEvent(scope=limit.scope, key=_key(limit, value), at=now))
            s.commit()
        self._sweep(now)

    def take(self, limit: Limit, value: str) -> float:
        """Count one event and return 0; or, over the limit, the seconds to wait (and
        count nothing)."""
        wait = self.wait_s((limit, value))
        if wait > 0:
            return wait
        self.hit((limit, value))
        return 0.0

    def clear(self, limit: Limit, value: str | None = None) -> None:
        """Forget the events of one value (e.g. a pair after a good sign-in), or with
        ``value=None`` every event of the limit."""
        with self._sessions() as s:
            where = (
                ThrottleEvent.scope == limit.scope
                if value is None
                else ThrottleEvent.key == _key(limit, value)
            )
            s.execute(delete(ThrottleEvent).where(where))
            s.commit()

    def _sweep(self, now: datetime) -> None:
        """Delete events older than every window, at most once a minute per process."""
        with self._lock:
            if time.monotonic() - self._swept < _SWEEP_EVERY_S:
                return
            self._swept = time.monotonic()
        with self._sessions() as s:
            s.execute(delete(ThrottleEvent).where(ThrottleEvent.at <= now - _LONGEST))
            s.commit()
