"""The audit log: who changed what, when. Secrets appear only as "changed"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from postroom.db.tables import AuditEntry

__all__ = ["AuditLog", "AuditRead", "diff_fields", "record"]

SECRET_FIELDS = frozenset({"password", "client_secret"})


class AuditRead(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target: str
    details: dict[str, Any]


def _flatten(data: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (data or {}).items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def diff_fields(
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    *,
    secrets: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Changed dotted fields → ``[old, new]``; secret fields (given by path) → ``"changed"``."""
    a, b = _flatten(old), _flatten(new)
    changes: dict[str, Any] = {}
    for path in sorted(set(a) | set(b)):
        if a.get(path) != b.get(path):
            changes[path] = [a.get(path), b.get(path)]
    for path in sorted(secrets):
        changes[path] = "changed"
    return changes


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target_type: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit row in the caller's transaction, so it commits with the change itself."""
    session.add(
        AuditEntry(
            actor=actor,
            action=action,
            target_type=target_type,
            target=target,
            details=details or {},
        )
    )


class AuditLog:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def list(
        self, *, limit: int = 100, target_type: str | None = None, target: str | None = None
    ) -> list[AuditRead]:
        """Newest first."""
        with self._sessions() as s:
            q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(max(1, min(limit, 1000)))
            if target_type:
                q = q.where(AuditEntry.target_type == target_type)
            if target:
                q = q.where(AuditEntry.target == target)
            return [AuditRead.model_validate(r, from_attributes=True) for r in s.scalars(q)]
