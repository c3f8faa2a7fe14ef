"""Token storage shared by every process: lease, compare-and-swap, consent, paused profiles.

All methods are blocking (database); the async token service runs them in a thread.

How one refresh at a time works, on SQLite and on PostgreSQL alike::

    acquire_lease   UPDATE oauth2_tokens SET lease_owner=me, lease_until=now+30s
                    WHERE config_id=? AND (lease_until IS NULL OR lease_until < now)
                    -- one statement: of several processes exactly one sees rowcount 1
    (call the token endpoint)
    save_refreshed  UPDATE … SET refresh_token=<new>, access_token=<new>, version=version+1,
                    lease_owner=NULL WHERE config_id=? AND version=<read> AND lease_owner=me
                    -- the rotated refresh token is stored in the same statement that ends the
                    -- lease, before the new access token is handed to anyone

A process killed between receiving the answer and storing it leaves the lease to expire; the
next process then refreshes with the refresh token it finds (the previous one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from postroom.audit import record
from postroom.db.tables import OAuth2Config, OutboxMessage, Profile, utcnow
from postroom.errors import NotFound
from postroom.oauth2.protocol import TokenGrant
from postroom.oauth2.schemas import OAuth2ConfigSpec
from postroom.oauth2.tables import OAuth2Flow, OAuth2Pause, OAuth2Token, TokenState
from postroom.outbox.schemas import DUE_STATES
from postroom.profiles.service import name_key
from postroom.secrets import SecretBox

__all__ = ["Snapshot", "TokenStore", "rotate_token_secrets"]

#: A grant without ``expires_in`` is assumed to last this long (the server says when it ends).
DEFAULT_LIFETIME_S = 600.0


@dataclass(frozen=True, repr=False)
class Snapshot:
    """A configuration and its stored tokens, decrypted. ``repr`` shows no secret."""

    config_id: int
    name: str
    spec: OAuth2ConfigSpec
    client_secret: str | None
    row: bool
    state: str | None = None
    account: str | None = None
    scopes: tuple[str, ...] = ()
    refresh_token: str | None = None
    access_token: str | None = None
    access_expires_at: datetime | None = None
    version: int = 0
    connected_at: datetime | None = None
    last_refresh_at: datetime | None = None
    last_error: dict[str, Any] | None = None
    failures: int = 0
    backoff_until: datetime | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None

    def __repr__(self) -> str:
        return f"Snapshot(config={self.name!r}, state={self.state!r}, version={self.version})"

    @property
    def sasl_user(self) -> str | None:
        return self.spec.username or self.account


class TokenStore:
    def __init__(self, sessions: sessionmaker[Session], box: Callable[[], SecretBox]) -> None:
        self._sessions = sessions
        self._box = box

    # -- reading ------------------------------------------------------------------------------

    def _config(self, s: Session, name: str) -> OAuth2Config:
        row = s.scalar(select(OAuth2Config).where(OAuth2Config.name_key == name_key(name)))
        if row is None:
            raise NotFound(f"No OAuth2 configuration named '{name}'.")
        return row

    def load(self, name: str, /) -> Snapshot:
        """The configuration ``name`` with its tokens (raises NotFound)."""
        with self._sessions() as s:
            config = self._config(s, name)
            return self._snapshot(config, s.get(OAuth2Token, config.id))

    def _snapshot(self, config: OAuth2Config, row: OAuth2Token | None) -> Snapshot:
        box = self._box()
        secret = None
        if config.client_secret is not None:
            what = f"the client secret of '{config.name}'"
            secret = box.references.resolve(box.decrypt(config.client_secret, what=what), what=what)
        base: dict[str, Any] = {
            "config_id": config.id,
            "name": config.name,
            "spec": OAuth2ConfigSpec.model_validate(config.spec),
            "client_secret": secret,
            "row": row is not None,
        }
        if row is None:
            return Snapshot(**base)
        what = f"the tokens of '{config.name}'"
        return Snapshot(
            **base,
            state=row.state,
            account=row.account,
            scopes=tuple(row.scopes or ()),
            refresh_token=box.decrypt(row.refresh_token, what=what) if row.refresh_token else None,
            access_token=box.decrypt(row.access_token, what=what) if row.access_token else None,
            access_expires_at=row.access_expires_at,
            version=row.version,
            connected_at=row.connected_at,
            last_refresh_at=row.last_refresh_at,
            last_error=row.last_error,
            failures=row.failures,
            backoff_until=row.backoff_until,
            lease_owner=row.lease_owner,
            lease_until=row.lease_until,
        )

    # -- the refresh lease --------------------------------------------------------------------

    def acquire_lease(self, config_id: int, owner: str, *, lease_s: float) -> bool:
        """Take the configuration's refresh lease if nobody holds a live one."""
        now = utcnow()
        with self._sessions() as s:
            if s.get(OAuth2Token, config_id) is None:
                s.add(OAuth2Token(config_id=config_id, scopes=[], version=1, failures=0))
                try:
                    s.commit()
                except IntegrityError:  # another process created it meanwhile: fine
                    s.rollback()
            result = s.execute(
                update(OAuth2Token)
                .where(
                    OAuth2Token.config_id == config_id,
                    or_(OAuth2Token.lease_until.is_(None), OAuth2Token.lease_until < now),
                )
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_s))
            )
            s.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def release_lease(self, config_id: int, owner: str) -> None:
        with self._sessions() as s:
            s.execute(
                update(OAuth2Token)
                .where(OAuth2Token.config_id == config_id, OAuth2Token.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )
            s.commit()

    def save_refreshed(
        self,
        config_id: int,
        owner: str,
        version: int,
        grant: TokenGrant,
        *,
        keep_refresh: str | None,
    ) -> bool:
        """Store a refresh's result and end the lease, if nobody wrote since ``version``.

        A rotated refresh token replaces the stored one; without one, ``keep_refresh`` stays.
        Returns False (nothing stored) when the lease was lost or the version moved on.
        """
        now = utcnow()
        box = self._box()
        refresh = grant.refresh_token or keep_refresh
        values: dict[str, Any] = {
            "access_token": box.encrypt(grant.access_token),
            "access_expires_at": now + timedelta(seconds=grant.expires_in or DEFAULT_LIFETIME_S),
            "refresh_token": box.encrypt(refresh) if refresh else None,
            "version": OAuth2Token.version + 1,
            "last_refresh_at": now,
            "last_error": None,
            "failures": 0,
            "backoff_until": None,
            "state": TokenState.CONNECTED,
            "lease_owner": None,
            "lease_until": None,
            "updated_at": now,
        }
        if grant.scope:
            values["scopes"] = list(grant.scope)
        with self._sessions() as s:
            result = s.execute(
                update(OAuth2Token)
                .where(
                    OAuth2Token.config_id == config_id,
                    OAuth2Token.version == version,
                    OAuth2Token.lease_owner == owner,
                )
                .values(**values)
            )
            s.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def record_failure(
        self,
        config_id: int,
        owner: str | None,
        error: dict[str, Any],
        *,
        consent_needed: bool,
        backoff_s: float | None,
    ) -> None:
        """Remember a failed refresh, end the lease; ``consent_needed`` pauses deliveries."""
        now = utcnow()
        values: dict[str, Any] = {
            "last_error": {**error, "at": now.isoformat()},
            "failures": OAuth2Token.failures + 1,
            "updated_at": now,
            "lease_owner": None,
            "lease_until": None,
        }
        if consent_needed:
            values |= {"state": TokenState.CONSENT_NEEDED, "access_token": None,
                       "access_expires_at": None, "backoff_until": None}  # fmt: skip
        elif backoff_s is not None:
            values["backoff_until"] = now + timedelta(seconds=backoff_s)
        with self._sessions() as s:
            query = update(OAuth2Token).where(OAuth2Token.config_id == config_id)
            if owner is not None:
                query = query.where(OAuth2Token.lease_owner == owner)
            changed = s.execute(query.values(**values)).rowcount  # type: ignore[attr-defined]
            config = s.get(OAuth2Config, config_id)
            if consent_needed and changed and config is not None:
                record(
                    s, actor="system", action="oauth2_consent_needed",
                    target_type="oauth2_config", target=config.name,
                    details={"error": error.get("error")},
                )  # fmt: skip
            s.commit()
        if consent_needed:
            self.pause_users(config_id)

    def forget_access(self, config_id: int, version: int) -> None:
        """Drop a cached access token the server refused (if no newer one was stored)."""
        with self._sessions() as s:
            s.execute(
                update(OAuth2Token)
                .where(OAuth2Token.config_id == config_id, OAuth2Token.version == version)
                .values(access_token=None, access_expires_at=None)
            )
            s.commit()

    # -- connecting ---------------------------------------------------------------------------

    def save_connected(
        self, config_id: int, grant: TokenGrant, *, account: str | None, actor: str, how: str
    ) -> None:
        """Store the tokens of a completed sign-in (or client-credentials fetch) and resume."""
        now = utcnow()
        box = self._box()
        with self._sessions() as s:
            config = s.get(OAuth2Config, config_id)
            if config is None:
                raise NotFound("The OAuth2 configuration was deleted during the sign-in.")
            row = s.get(OAuth2Token, config_id)
            if row is None:
                row = OAuth2Token(config_id=config_id, version=0, failures=0)
                s.add(row)
            row.state = TokenState.CONNECTED
            row.account = account or row.account
            row.scopes = list(grant.scope) or row.scopes or []
            row.refresh_token = box.encrypt(grant.refresh_token) if grant.refresh_token else None
            row.access_token = box.encrypt(grant.access_token)
            row.access_expires_at = now + timedelta(seconds=grant.expires_in or DEFAULT_LIFETIME_S)
            row.version = (row.version or 0) + 1
            row.connected_at = now
            row.last_refresh_at = now
            row.last_error = None
            row.failures = 0
            row.backoff_until = None
            row.updated_at = now
            record(
                s, actor=actor, action="oauth2_connect", target_type="oauth2_config",
                target=config.name, details={"grant": how, "account": account},
            )  # fmt: skip
            s.commit()
        self.resume_users(config_id)

    # -- paused deliveries ------------------------------------------------------------------

    def _sending_users(self, s: Session, config_id: int) -> list[int]:
        config = s.get(OAuth2Config, config_id)
        if config is None:
            return []
        ids = []
        for profile in s.scalars(select(Profile)):
            smtp = profile.spec.get("smtp") or {}
            if smtp.get("auth") == "oauth2" and name_key(smtp.get("oauth2_config") or "") == (
                config.name_key
            ):
                ids.append(profile.id)
        return ids

    def pause_users(self, config_id: int) -> list[int]:
        """Pause deliveries of every profile that sends through this configuration (and lift
        the pause of profiles that no longer do)."""
        with self._sessions() as s:
            ids = self._sending_users(s, config_id)
            s.execute(
                delete(OAuth2Pause).where(
                    OAuth2Pause.config_id == config_id, OAuth2Pause.profile_id.not_in(ids)
                )
            )
            paused = set(s.scalars(select(OAuth2Pause.profile_id)))
            for profile_id in ids:
                if profile_id not in paused:
                    s.add(OAuth2Pause(profile_id=profile_id, config_id=config_id))
            try:
                s.commit()
            except IntegrityError:  # another process paused them at the same moment
                s.rollback()
            return ids

    def resume_users(self, config_id: int) -> list[int]:
        """Lift the pause; waiting messages become due now instead of after their backoff."""
        now = utcnow()
        with self._sessions() as s:
            ids = list(
                s.scalars(
                    delete(OAuth2Pause)
                    .where(OAuth2Pause.config_id == config_id)
                    .returning(OAuth2Pause.profile_id)
                )
            )
            if ids:
                s.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.profile_id.in_(ids),
                        OutboxMessage.status.in_(DUE_STATES),
                        OutboxMessage.due_at > now,
                    )
                    .values(due_at=now)
                )
            s.commit()
            return ids

    def paused_profiles(self, config_id: int) -> list[str]:
        """Names of the paused profiles; a profile switched to other credentials meanwhile
        is resumed here."""
        with self._sessions() as s:
            stale = s.execute(
                delete(OAuth2Pause).where(
                    OAuth2Pause.config_id == config_id,
                    OAuth2Pause.profile_id.not_in(self._sending_users(s, config_id)),
                )
            ).rowcount  # type: ignore[attr-defined]
            if stale:
                s.commit()
            return list(
                s.scalars(
                    select(Profile.name)
                    .join(OAuth2Pause, OAuth2Pause.profile_id == Profile.id)
                    .where(OAuth2Pause.config_id == config_id)
                    .order_by(Profile.name_key)
                )
            )


def rotate_token_secrets(s: Session, box: SecretBox) -> int:
    """Re-encrypt stored tokens and sign-in secrets under ``box``'s primary key (key rotation)."""
    count = 0
    for row in s.scalars(select(OAuth2Token)):
        for column in ("refresh_token", "access_token"):
            value = getattr(row, column)
            if value is not None:
                what = f"the OAuth2 {column} of configuration #{row.config_id}"
                setattr(row, column, box.rotate(value, what=what))
                count += 1
    for flow in s.scalars(select(OAuth2Flow).where(OAuth2Flow.used_at.is_(None))):
        flow.secret = box.rotate(flow.secret, what="an OAuth2 sign-in secret")
        count += 1
    return count
