"""What an API key may send as, and whose messages and actions it may read (pure).

Every message and action records the API key that created it (``created_by``). A key of
role ``sender`` reads only those; it may also be limited to some processes and profiles,
set when the key is made. Mail without a key — the platform's own (password reset links,
alerts), notifications, the Python API — is never visible to a sender key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from postroom.errors import PermissionDenied

__all__ = ["SenderScope"]


def _key(name: str) -> str:
    return name.strip().casefold()  # as profiles.service.name_key: names match regardless of case


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


@dataclass(frozen=True)
class SenderScope:
    """The caller's limits. ``key_id`` is recorded as the creator of what it queues;
    ``sees_all`` (admin keys) lifts the reading filter."""

    key_id: int | None
    name: str
    sees_all: bool
    processes: tuple[str, ...] | None = None
    profiles: tuple[str, ...] | None = None

    @property
    def owner(self) -> int | None:
        """Whose records this caller reads: its own key id, or None for everything."""
        if self.sees_all:
            return None
        return self.key_id if self.key_id is not None else 0  # no key: nothing (ids start at 1)

    def may_read(self, created_by: int | None) -> bool:
        return self.sees_all or (created_by is not None and created_by == self.key_id)

    def check_process(self, process: str | None) -> None:
        """PermissionDenied unless the key may send for ``process`` (None: no process)."""
        if self.processes is None:
            return
        allowed = _names(self.processes)
        if process is None:
            raise PermissionDenied(
                f"API key '{self.name}' may send only for the processes {allowed}: "
                "name one of them in 'process'."
            )
        if _key(process) not in {_key(p) for p in self.processes}:
            raise PermissionDenied(
                f"API key '{self.name}' may send only for the processes {allowed}, "
                f"not for '{process}'; an administrator can create a key for it."
            )

    def check_profile(self, profile: str, *, process: str | None = None) -> None:
        """PermissionDenied unless the key may send through ``profile`` (the profile the
        request named, or the one its process resolved to)."""
        if self.profiles is None or _key(profile) in {_key(p) for p in self.profiles}:
            return
        via = f"process '{process}' sends through" if process else "the request names"
        raise PermissionDenied(
            f"API key '{self.name}' may send only through the profiles "
            f"{_names(self.profiles)}; {via} profile '{profile}'."
        )
