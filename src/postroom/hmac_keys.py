"""Postroom's own HMAC keys (stored encrypted in ``action_keys``), read with a short cache.

The same keys sign action links and the bounce tokens of sent mail. Keys are kept by id:
the newest signs, every kept key verifies, so a rotation does not void what was signed
before. Reading them costs a query and a decryption, too much for every message sent:
they are cached for ``ttl_s``, and an unknown key id refreshes the cache at once (another
process may have rotated).
"""

from __future__ import annotations

import secrets
import threading
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from postroom.actions.tables import ActionKey
from postroom.secrets import SecretBox

__all__ = ["HmacKeys"]


class HmacKeys:
    def __init__(self, sessions: sessionmaker[Session], box: SecretBox, *, ttl_s: float = 60.0):
        self._sessions = sessions
        self.box = box
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cached: tuple[float, str, dict[str, bytes]] | None = None

    def _load(self, *, create: bool) -> tuple[str, dict[str, bytes]] | None:
        with self._sessions() as s:
            rows = list(s.scalars(select(ActionKey).order_by(ActionKey.created_at)))
            if not rows and create:
                s.add(
                    ActionKey(kid=secrets.token_hex(4), key=self.box.encrypt(secrets.token_hex(32)))
                )
                s.commit()
                rows = list(s.scalars(select(ActionKey).order_by(ActionKey.created_at)))
            if not rows:
                return None
            keys = {
                r.kid: self.box.decrypt(r.key, what="a postroom HMAC key").encode() for r in rows
            }
        with self._lock:
            self._cached = (time.monotonic(), rows[-1].kid, keys)
        return rows[-1].kid, keys

    def _fresh(self) -> tuple[str, dict[str, bytes]] | None:
        with self._lock:
            cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1], cached[2]
        return None

    def current(self) -> tuple[str, bytes]:
        """The signing key: its id and bytes (created when there is none yet)."""
        found = self._fresh() or self._load(create=True)
        assert found is not None
        kid, keys = found
        return kid, keys[kid]

    def all(self, *, need: str | None = None) -> dict[str, bytes]:
        """Every kept key by id; re-read at once when ``need`` (a key id) is not among them."""
        found = self._fresh()
        if found is None or (need is not None and need not in found[1]):
            found = self._load(create=False)
        return dict(found[1]) if found else {}

    def forget(self) -> None:
        """Drop the cache (after a rotation in this process, or new secret keys)."""
        with self._lock:
            self._cached = None

    def replace_box(self, box: SecretBox) -> None:
        self.box = box
        self.forget()
