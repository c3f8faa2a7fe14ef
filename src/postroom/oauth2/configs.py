"""OAuth2 configurations: records only (tokens come with the OAuth2 lifecycle)."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from postroom.audit import diff_fields, record
from postroom.db.tables import OAuth2Config, Profile, utcnow
from postroom.errors import Conflict, FieldError, NotFound, StaleVersion, ValidationError
from postroom.oauth2.providers import ProviderError, resolve
from postroom.oauth2.schemas import OAuth2ConfigRead, OAuth2ConfigSpec
from postroom.oauth2.tables import OAuth2Token
from postroom.profiles.schemas import MASKED_SECRET
from postroom.profiles.service import name_key
from postroom.secrets import SecretBox
from postroom.validation import validate_model

__all__ = ["OAuth2Configs"]

TOKEN_URL_CHANGED = (
    "type the client secret again: the token endpoint changed (provider, tenant or token "
    "URL), and a stored client secret is only ever sent to the endpoint it was saved for"
)


def _token_url(spec: OAuth2ConfigSpec) -> str | None:
    """Where the client secret (and the refresh token) is sent."""
    try:
        return resolve(spec).token_url
    except ProviderError:
        return spec.token_url


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

    def _refusal(self, secret: str, *, operator: bool) -> FieldError | None:
        reason = self._box.references.refusal(secret, operator=operator)
        return FieldError("client_secret", reason) if reason else None

    def create(
        self, data: dict[str, Any], /, *, actor: str = "system", operator: bool = False
    ) -> OAuth2ConfigRead:
        """Create a configuration. ``operator``: the input comes from the CLI, so the client
        secret may be an ``env:``/``file:`` reference (see :class:`SecretReferences`)."""
        spec = validate_model(OAuth2ConfigSpec, data)
        with self._sessions() as s:
            if s.scalar(
                select(OAuth2Config.id).where(OAuth2Config.name_key == name_key(spec.name))
            ):
                raise ValidationError(
                    FieldError(
                        "name",
                        f"an OAuth2 configuration named '{spec.name}' already exists",
                        kind="conflict",
                    )
                )
            stored = spec.model_dump(mode="json", exclude={"client_secret"})
            row = OAuth2Config(name=spec.name, name_key=name_key(spec.name), spec=stored)
            secrets = set()
            if spec.client_secret and spec.client_secret != MASKED_SECRET:
                refused = self._refusal(spec.client_secret, operator=operator)
                if refused:
                    raise ValidationError(refused)
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
        operator: bool = False,
    ) -> OAuth2ConfigRead:
        """Change a configuration. A client secret left out keeps the stored one only while
        the token endpoint is unchanged; a changed endpoint also drops the stored tokens, so
        no refresh token is ever sent to an endpoint it was not issued by."""
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
            spec = validate_model(
                OAuth2ConfigSpec, {**row.spec, **changes, "client_secret": secret}
            )
            secret = spec.client_secret
            stored = spec.model_dump(mode="json", exclude={"client_secret"})
            moved = _token_url(OAuth2ConfigSpec.model_validate(row.spec)) != _token_url(spec)
            secrets = set()
            if secret and secret != MASKED_SECRET:
                refused = self._refusal(secret, operator=operator)
                if refused:
                    raise ValidationError(refused)
                row.client_secret = self._box.encrypt(secret)
                secrets.add("client_secret")
            elif moved and row.client_secret is not None:
                raise ValidationError(FieldError("client_secret", TOKEN_URL_CHANGED))
            details = diff_fields(row.spec, stored, secrets=secrets)
            if moved:
                s.execute(delete(OAuth2Token).where(OAuth2Token.config_id == row.id))
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
        self, data: dict[str, Any], /, *, actor: str = "system", operator: bool = False
    ) -> tuple[OAuth2ConfigRead, bool]:
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(FieldError("name", "is required"))
        try:
            self.get(name)
        except NotFound:
            return self.create(data, actor=actor, operator=operator), True
        return self.update(name, data, actor=actor, operator=operator), False

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
