"""OAuth2 configurations: records only (tokens come with the OAuth2 lifecycle)."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from postroom.audit import diff_fields, record
from postroom.db.tables import OAuth2Config, Profile, utcnow
from postroom.errors import Conflict, FieldError, NotFound, StaleVersion, ValidationError
from postroom.oauth2.schemas import OAuth2ConfigRead, OAuth2ConfigSpec
from postroom.profiles.schemas import MASKED_SECRET
from postroom.profiles.service import name_key
from postroom.secrets import SecretBox
from postroom.validation import validate_model

__all__ = ["OAuth2Configs"]


def _users(s: Session, name: str) -> list[str]:
    key = name_key(name)
    out = []
    for row in s.scalars(select(Profile).order_by(Profile.name_key)):
        for side in ("smtp", "imap"):
            section = row.spec.get(side) or {}
            if (
                section.get("auth") == "oauth2"
                and name_key(section.get("oauth2_config") or "") == key
            ):
                out.append(row.name)
                break
    return out


class OAuth2Configs:
    def __init__(self, sessions: sessionmaker[Session], box: SecretBox) -> None:
        self._sessions = sessions
        self._box = box

    def _row(self, s: Session, name: str) -> OAuth2Config:
        row = s.scalar(select(OAuth2Config).where(OAuth2Config.name_key == name_key(name)))
        if row is None:
            raise NotFound(f"No OAuth2 configuration named '{name}'.")
        return row

    def get(self, name: str, /) -> OAuth2ConfigRead:
        with self._sessions() as s:
            row = self._row(s, name)
            return OAuth2ConfigRead.build(row, _users(s, row.name))

    def list(self) -> list[OAuth2ConfigRead]:
        with self._sessions() as s:
            rows = s.scalars(select(OAuth2Config).order_by(OAuth2Config.name_key))
            return [OAuth2ConfigRead.build(r, _users(s, r.name)) for r in rows]

    def client_secret(self, name: str, /) -> str | None:
        """The decrypted client secret (adapters only)."""
        with self._sessions() as s:
            row = self._row(s, name)
            if row.client_secret is None:
                return None
            return self._box.decrypt(row.client_secret, what=f"the client secret of '{row.name}'")

    def create(self, data: dict[str, Any], /, *, actor: str = "system") -> OAuth2ConfigRead:
        spec = validate_model(OAuth2ConfigSpec, data)
        with self._sessions() as s:
            if s.scalar(
                select(OAuth2Config.id).where(OAuth2Config.name_key == name_key(spec.name))
            ):
                raise ValidationError(
                    FieldError(
                        "name", f"an OAuth2 configuration named '{spec.name}' already exists"
                    )
                )
            stored = spec.model_dump(mode="json", exclude={"client_secret"})
            row = OAuth2Config(name=spec.name, name_key=name_key(spec.name), spec=stored)
            secrets = set()
            if spec.client_secret and spec.client_secret != MASKED_SECRET:
                row.client_secret = self._box.encrypt(spec.client_secret)
                secrets.add("client_secret")
            s.add(row)
            record(
                s,
                actor=actor,
                action="create",
                target_type="oauth2_config",
                target=spec.name,
                details={"changes": diff_fields(None, stored, secrets=secrets)},
            )
            s.commit()
            return OAuth2ConfigRead.build(row, [])

    def update(
        self,
        name: str,
        changes: dict[str, Any],
        /,
        *,
        version: int | None = None,
        actor: str = "system",
    ) -> OAuth2ConfigRead:
        changes = copy.deepcopy(changes)
        changes.pop("version", None)
        with self._sessions() as s:
            row = self._row(s, name)
            if version is not None and version != row.version:
                raise StaleVersion(
                    f"OAuth2 configuration '{row.name}' was changed by someone else (now version "
                    f"{row.version}, you edited version {version}). Reload and retry."
                )
            if name_key(changes.get("name", row.name)) != row.name_key:
                raise ValidationError(
                    FieldError("name", "cannot be changed (profiles refer to it by name)")
                )
            secret = changes.pop("client_secret", None)
            spec = validate_model(OAuth2ConfigSpec, {**row.spec, **changes})
            stored = spec.model_dump(mode="json", exclude={"client_secret"})
            secrets = set()
            if secret and secret != MASKED_SECRET:
                row.client_secret = self._box.encrypt(secret)
                secrets.add("client_secret")
            details = diff_fields(row.spec, stored, secrets=secrets)
            if details:
                row.spec = stored
                row.updated_at = utcnow()
                record(
                    s,
                    actor=actor,
                    action="update",
                    target_type="oauth2_config",
                    target=row.name,
                    details={"changes": details},
                )
                s.commit()
            return OAuth2ConfigRead.build(row, _users(s, row.name))

    def apply(
        self, data: dict[str, Any], /, *, actor: str = "system"
    ) -> tuple[OAuth2ConfigRead, bool]:
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(FieldError("name", "is required"))
        try:
            self.get(name)
        except NotFound:
            return self.create(data, actor=actor), True
        return self.update(name, data, actor=actor), False

    def delete(self, name: str, /, *, actor: str = "system") -> None:
        with self._sessions() as s:
            row = self._row(s, name)
            users = _users(s, row.name)
            if users:
                raise Conflict(
                    f"Cannot delete OAuth2 configuration '{row.name}': profiles use it: "
                    + ", ".join(users)
                    + ". Switch their authentication first."
                )
            record(s, actor=actor, action="delete", target_type="oauth2_config", target=row.name)
            s.delete(row)
            s.commit()
