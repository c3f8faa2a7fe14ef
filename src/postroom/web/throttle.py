"""Throttling (pure): so many failed sign-ins per username and address, so many password
reset requests per address, then a pause.

Kept in memory of one process: behind a load balancer each ``serve`` counts on its own,
which still bounds guessing to a small multiple of the limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["LoginThrottle", "RequestLimit"]


class LoginThrottle:
    """At most ``limit`` failed sign-ins per (username, address) within ``window_s``."""

    def __init__(
        self,
        *,
        limit: int = 5,
        window_s: float = 15 * 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        failures = self._failures.get(key, deque())
        while failures and now - failures[0] >= self.window_s:
            failures.popleft()
        if failures:
            self._failures[key] = failures
        else:
            self._failures.pop(key, None)
        return failures

    def wait_s(self, username: str, address: str) -> float:
        """Seconds until this pair may try again; 0 when it may try now."""
        key = (username.strip().casefold(), address)
        with self._lock:
            now = self._clock()
            failures = self._recent(key, now)
            if len(failures) < self.limit:
                return 0.0
            return max(0.0, failures[0] + self.window_s - now)

    def failed(self, username: str, address: str) -> None:
        """Count one failed sign-in."""
        key = (username.strip().casefold(), address)
        with self._lock:
            now = self._clock()
            failures = self._recent(key, now)
            failures.append(now)
            self._failures[key] = failures
            if len(self._failures) > 10_000:  # bound memory under a spray of usernames
                oldest = min(self._failures, key=lambda k: self._failures[k][-1])
                del self._failures[oldest]

    def succeeded(self, username: str, address: str) -> None:
        """Forget this pair's failures."""
        with self._lock:
            self._failures.pop((username.strip().casefold(), address), None)

    @staticmethod
    def minutes(wait_s: float) -> int:
        """``wait_s`` rounded up to whole minutes, for messages."""
        return max(1, math.ceil(wait_s / 60))


class RequestLimit:
    """At most ``limit`` requests per key (e.g. a client address) within ``window_s``."""

    def __init__(
        self,
        *,
        limit: int,
        window_s: float = 15 * 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Count one request and return 0; or, over the limit, the seconds to wait (and
        count nothing)."""
        with self._lock:
            now = self._clock()
            hits = self._hits.get(key, deque())
            while hits and now - hits[0] >= self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(0.0, hits[0] + self.window_s - now)
            hits.append(now)
            self._hits[key] = hits
            if len(self._hits) > 10_000:  # bound memory: forget the quietest key
                oldest = min(self._hits, key=lambda k: self._hits[k][-1] if self._hits[k] else 0)
                del self._hits[oldest]
            return 0.0

    def clear(self) -> None:
        """Forget every count."""
        with self._lock:
            self._hits.clear()
