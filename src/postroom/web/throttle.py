"""A request limit kept in the memory of one process (pure).

Sign-in, API-key and password-reset throttles are not here: they live in the database
(postroom.throttles), so every ``serve`` process counts as one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["RequestLimit"]


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
