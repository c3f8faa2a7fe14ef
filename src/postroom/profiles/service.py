"""Profiles: create, read, update, delete — validated, versioned, audited, secrets encrypted.

Every method either commits the whole change (with its audit row) or raises and leaves
storage exactly as it was.
"""

from __future__ import annotations

import builtins
import copy
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from postroom.audit import diff_fields, record
from postroom.db.tables import (
    Binding,
    OAuth2Config,
    OutboxMessage,
    Profile,
    SystemSetting,
    utcnow,
)
from postroom.errors import Conflict, FieldError, NotFound, StaleVersion, ValidationError
from postroom.profiles.schemas import (
    MASKED_SECRET,
    AuthMethod,
    LastTest,
    ProfileRead,
    ProfileSpec,
    ProfileUsage,
    parse_spec,
    warnings_for,
)
from postroom.secrets import SecretBox

__all__ = ["DEFAULT_PROFILE_KEY", "ProfileInUse", "ProfileService", "name_key"]

DEFAULT_PROFILE_KEY = "default_profile_id"
#: outbox states counted in a profile's usage: delivered, or given up on
_COUNTED = ("sent", "failed", "bounced")
_SIDES = ("smtp", "imap")
#: What identifies the server a stored password was saved for.
_DESTINATION = ("host", "port", "security", "username")
DESTINATION_CHANGED = (
    "type the password again: the server changed (host, port, security or username), and a "
    "stored password is only ever sent to the server it was saved for"
)


class ProfileInUse(Conflict):
    """Deleting or disabling the profile would leave processes (or the platform) without mail.

    ``processes`` are the bound processes; ``is_default`` says it is the system default.
    """

    def __init__(self, message: str, *, processes: list[str], is_default: bool) -> None:
        super().__init__(message)
        self.processes = processes
        self.is_default = is_default


def name_key(name: str) -> str:
    """The case-insensitive identity of a name."""
    return name.strip().casefold()


def _is_kept(secret: Any) -> bool:
    """An absent, empty or masked secret on input means "keep the stored one"."""
    return secret is None or secret == "" or secret == MASKED_SECRET


def _destination(section: dict[str, Any]) -> tuple[Any, ...]:
    host = section.get("host")
    return (
        host.casefold() if isinstance(host, str) else host,
        *(section.get(key) for key in _DESTINATION[1:]),
    )


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _stored_spec(spec: ProfileSpec) -> dict[str, Any]:
    data = spec.model_dump(mode="json")
    for side in _SIDES:
        if data.get(side):
            data[side].pop("password", None)
    return data


class ProfileService:
    """The profiles of one postroom database. Methods take names (case-insensitive)."""

    def __init__(
        self, sessions: sessionmaker[Session], box: SecretBox, *, unused_days: int = 90
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._unused_days = unused_days

    def _unused(self, row: Profile, default_id: int | None, bound: set[int]) -> str | None:
        """Why ``row`` looks obsolete, or None: found from facts, not guessed."""
        if row.id == default_id or row.id in bound:
            return None
        last = row.last_used_at or row.created_at
        if utcnow() - last < timedelta(days=self._unused_days):
            return None
        used = f"last used {row.last_used_at:%Y-%m-%d}" if row.last_used_at else "never used"
        return (
            f"not the default, bound to no process, and {used} (more than {self._unused_days} days)"
        )

    def _bound_ids(self, s: Session) -> set[int]:
        return set(s.scalars(select(Binding.profile_id).distinct()))

    # -- reading ---------------------------------------------------------------------------

    def _row(self, s: Session, name: str) -> Profile:
        row = s.scalar(select(Profile).where(Profile.name_key == name_key(name)))
        if row is None:
            raise NotFound(f"No profile named '{name}'. `postroom profile list` shows them.")
        return row

    def _default_id(self, s: Session) -> int | None:
        setting = s.get(SystemSetting, DEFAULT_PROFILE_KEY)
        return int(setting.value) if setting and setting.value else None

    def _last_test(self, row: Profile) -> LastTest | None:
        if not row.last_test:
            return None
        data = dict(row.last_test)
        tested = data.pop("fingerprint", None)
        result = LastTest.model_validate(data)
        if isinstance(tested, str):
            stale = tested != _test_fingerprint(row.spec, result.kind, row.secret_rotated_at)
        else:  # recorded before fingerprints: any later edit may have changed what it tested
            stale = row.updated_at > result.at
        return result.model_copy(update={"stale": stale})

    def _usage_counts(
        self, s: Session, profile_ids: builtins.list[int] | None = None
    ) -> dict[int, ProfileUsage]:
        """Sent and failed counts per profile over 7 and 30 days: one grouped query."""
        now = utcnow()
        week, month = now - timedelta(days=7), now - timedelta(days=30)
        m = OutboxMessage
        query = (
            select(
                m.profile_id,
                m.status,
                func.count(),
                func.sum(case((m.created_at >= week, 1), else_=0)),
            )
            .where(m.created_at >= month, m.status.in_(_COUNTED), m.profile_id.is_not(None))
            .group_by(m.profile_id, m.status)
        )
        if profile_ids is not None:
            query = query.where(m.profile_id.in_(profile_ids))
        out: dict[int, ProfileUsage] = {}
        for profile_id, status, in_month, in_week in s.execute(query):
            usage = out.setdefault(profile_id, ProfileUsage())
            kind = "sent" if status == "sent" else "failed"
            setattr(usage, f"{kind}_30d", getattr(usage, f"{kind}_30d") + int(in_month))
            setattr(usage, f"{kind}_7d", getattr(usage, f"{kind}_7d") + int(in_week or 0))
        return out

    def _read(
        self,
        row: Profile,
        default_id: int | None,
        usage: ProfileUsage | None = None,
        unused: str | None = None,
    ) -> ProfileRead:
        spec = copy.deepcopy(row.spec)
        spec["smtp"]["password_set"] = row.smtp_password is not None
        if spec.get("imap"):
            spec["imap"]["password_set"] = row.imap_password is not None
        parsed = ProfileSpec.model_validate(row.spec)
        return ProfileRead(
            id=row.id,
            **{k: v for k, v in spec.items()},
            version=row.version,
            is_default=row.id == default_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
            last_test=self._last_test(row),
            last_used_at=row.last_used_at,
            secret_rotated_at=row.secret_rotated_at,
            usage=usage or ProfileUsage(),
            unused=unused,
            warnings=warnings_for(parsed),
        )

    def get(self, name: str, /) -> ProfileRead:
        """The profile named ``name``; raises NotFound."""
        with self._sessions() as s:
            row = self._row(s, name)
            usage = self._usage_counts(s, [row.id]).get(row.id)
            default_id = self._default_id(s)
            unused = self._unused(row, default_id, self._bound_ids(s))
            return self._read(row, default_id, usage, unused)

    def list(self, *, unused: bool = False) -> list[ProfileRead]:
        """Every profile, by name; ``unused``: only those flagged unused."""
        with self._sessions() as s:
            default_id = self._default_id(s)
            usage = self._usage_counts(s)
            bound = self._bound_ids(s)
            rows = s.scalars(select(Profile).order_by(func.lower(Profile.name)))
            out = [
                self._read(r, default_id, usage.get(r.id), self._unused(r, default_id, bound))
                for r in rows
            ]
            return [p for p in out if p.unused] if unused else out

    def spec_with_secrets(self, name: str, /) -> ProfileSpec:
        """The full spec with passwords decrypted and references resolved (adapters only)."""
        with self._sessions() as s:
            row = self._row(s, name)
            return self._spec_from_row(row)

    def spec_by_id(self, profile_id: int, /) -> ProfileSpec:
        """Like :meth:`spec_with_secrets`, by id (the delivery worker's view)."""
        with self._sessions() as s:
            row = s.get(Profile, profile_id)
            if row is None:
                raise NotFound(f"No profile with id {profile_id}.")
            return self._spec_from_row(row)

    def _spec_from_row(self, row: Profile) -> ProfileSpec:
        data = copy.deepcopy(row.spec)
        for side, column in (("smtp", row.smtp_password), ("imap", row.imap_password)):
            if data.get(side) is not None and column is not None:
                what = f"the {side} password of '{row.name}'"
                plain = self._box.decrypt(column, what=what)
                data[side]["password"] = self._box.references.resolve(plain, what=what)
        return ProfileSpec.model_validate(data)

    def merged_spec(
        self, data: dict[str, Any], /, *, existing: str | None, operator: bool = False
    ) -> ProfileSpec:
        """Validate unsaved settings, with secrets ready for use (references resolved).

        Used to test settings before saving them ("Test SMTP" on an edit form). A secret
        left empty or masked comes from ``existing`` — only while that side's destination
        (host, port, security, username) is the stored one. A reference is accepted as
        :meth:`create` accepts it (``operator``: the CLI). Raises ValidationError, or
        SecretReferenceError when a reference cannot be read.
        """
        data = copy.deepcopy(data)
        given: dict[str, str] = {}
        for side in _SIDES:
            section = data.get(side)
            if isinstance(section, dict):
                secret = section.get("password")
                if _is_kept(secret):
                    section["password"] = None
                elif isinstance(secret, str):
                    given[side] = secret
        spec = parse_spec(data)
        row = None
        if existing is not None:
            with self._sessions() as s:
                row = self._row(s, existing)
        references = self._box.references
        errors: list[FieldError] = []
        secrets: dict[str, str] = {}
        for side in _SIDES:
            server = getattr(spec, side)
            if server is None:
                continue
            if side in given:
                reason = references.refusal(given[side], operator=operator)
                if reason:
                    errors.append(FieldError(f"{side}.password", reason))
                else:
                    secrets[side] = given[side]
                continue
            column = getattr(row, f"{side}_password") if row is not None else None
            stored_side = row.spec.get(side) if row is not None else None
            if column is None or not stored_side or server.auth is not AuthMethod.BASIC:
                continue
            if _destination(stored_side) != _destination(server.model_dump(mode="json")):
                errors.append(FieldError(f"{side}.password", DESTINATION_CHANGED))
                continue
            assert row is not None
            secrets[side] = self._box.decrypt(column, what=f"the {side} password of '{row.name}'")
        if errors:
            raise ValidationError(errors)
        updates = {
            side: getattr(spec, side).model_copy(
                update={"password": references.resolve(secret, what=f"the {side} password")}
            )
            for side, secret in secrets.items()
        }
        return spec.model_copy(update=updates)

    # -- writing ---------------------------------------------------------------------------

    def _check_refs(self, s: Session, spec: ProfileSpec) -> None:
        errors = []
        for side in _SIDES:
            server = getattr(spec, side)
            if server is not None and server.auth is AuthMethod.OAUTH2:
                key = name_key(server.oauth2_config or "")
                if s.scalar(select(OAuth2Config.id).where(OAuth2Config.name_key == key)) is None:
                    errors.append(
                        FieldError(
                            f"{side}.oauth2_config",
                            f"no OAuth2 configuration named '{server.oauth2_config}'; create it "
                            "first (`postroom oauth2 add`)",
                        )
                    )
        if errors:
            raise ValidationError(errors)

    def _apply_secrets(
        self,
        row: Profile,
        spec: ProfileSpec,
        raw: dict[str, Any],
        changed: set[str],
        *,
        operator: bool,
    ) -> None:
        """Store the secrets of ``spec`` on ``row`` (whose ``spec`` is still the old one)."""
        errors = []
        for side in _SIDES:
            server = getattr(spec, side)
            column = f"{side}_password"
            section = raw.get(side) if isinstance(raw.get(side), dict) else {}
            given = section.get("password") if section else None
            if server is None or server.auth is not AuthMethod.BASIC:
                if getattr(row, column) is not None:
                    setattr(row, column, None)
                    changed.add(f"{side}.password")
                continue
            if isinstance(given, str) and not _is_kept(given):
                reason = self._box.references.refusal(given, operator=operator)
                if reason:
                    errors.append(FieldError(f"{side}.password", reason))
                    continue
                setattr(row, column, self._box.encrypt(given))
                changed.add(f"{side}.password")
            elif getattr(row, column) is None:
                errors.append(FieldError(f"{side}.password", "is required when auth is 'basic'"))
            elif _destination((row.spec or {}).get(side) or {}) != _destination(
                server.model_dump(mode="json")
            ):
                errors.append(FieldError(f"{side}.password", DESTINATION_CHANGED))
        if errors:
            raise ValidationError(errors)

    def create(
        self,
        data: dict[str, Any] | ProfileSpec,
        /,
        *,
        actor: str = "system",
        operator: bool = False,
    ) -> ProfileRead:
        """Create a profile; raises ValidationError or Conflict (name taken).

        ``operator``: the input comes from the operator (CLI flags, files the CLI read), so
        a secret may be any ``env:``/``file:`` reference but postroom's own keys; otherwise
        only a reference on the operator's allow-list (see :class:`SecretReferences`).
        """
        raw = data.model_dump() if isinstance(data, ProfileSpec) else copy.deepcopy(data)
        spec = parse_spec(raw)
        with self._sessions() as s:
            self._check_refs(s, spec)
            if s.scalar(select(Profile.id).where(Profile.name_key == name_key(spec.name))):
                raise ValidationError(
                    FieldError(
                        "name", f"a profile named '{spec.name}' already exists", kind="conflict"
                    )
                )
            row = Profile(
                name=spec.name,
                name_key=name_key(spec.name),
                enabled=spec.enabled,
                spec=_stored_spec(spec),
            )
            secrets: set[str] = set()
            self._apply_secrets(row, spec, raw, secrets, operator=operator)
            if secrets:
                row.secret_rotated_at = utcnow()
            s.add(row)
            record(
                s,
                actor=actor,
                action="create",
                target_type="profile",
                target=spec.name,
                details={"changes": diff_fields(None, row.spec, secrets=secrets)},
            )
            if row.enabled and self._default_id(s) is None:
                # A safe default: without one, postroom's own mail (password resets) and
                # processes without a binding have nowhere to go.
                self._flush(s, spec.name)
                s.add(SystemSetting(key=DEFAULT_PROFILE_KEY, value=str(row.id)))
                record(
                    s,
                    actor=actor,
                    action="set_default",
                    target_type="profile",
                    target=spec.name,
                    details={"previous": None, "reason": "no default existed"},
                )
            self._commit(s, spec.name)
            return self._read(row, self._default_id(s))

    def update(
        self,
        name: str,
        changes: dict[str, Any],
        /,
        *,
        version: int | None = None,
        force: bool = False,
        actor: str = "system",
        operator: bool = False,
    ) -> ProfileRead:
        """Apply ``changes`` (a partial profile, merged field by field).

        ``version``, when given, must match the stored one, else StaleVersion. A secret
        left out, empty or masked keeps the stored secret — only while that side's host,
        port, security and username are unchanged; else ValidationError asks for it again.
        ``operator`` as in :meth:`create`. Disabling a profile that is the
        default or bound raises Conflict naming the processes, unless ``force``.
        """
        changes = copy.deepcopy(changes)
        changes.pop("version", None)
        with self._sessions() as s:
            row = self._row(s, name)
            if version is not None and version != row.version:
                raise StaleVersion(
                    f"Profile '{row.name}' was changed by someone else (now version "
                    f"{row.version}, you edited version {version}). Reload it and apply your "
                    "change again."
                )
            merged = _merge(row.spec, changes)
            spec = parse_spec(merged)
            if row.enabled and not spec.enabled and not force:
                processes, is_default = self._usage(s, row)
                if processes or is_default:
                    raise ProfileInUse(
                        _in_use_message(row.name, processes, is_default, "disable"),
                        processes=processes,
                        is_default=is_default,
                    )
            self._check_refs(s, spec)
            if name_key(spec.name) != row.name_key and s.scalar(
                select(Profile.id).where(Profile.name_key == name_key(spec.name))
            ):
                raise ValidationError(
                    FieldError(
                        "name", f"a profile named '{spec.name}' already exists", kind="conflict"
                    )
                )
            secrets: set[str] = set()
            self._apply_secrets(row, spec, merged, secrets, operator=operator)
            new_spec = _stored_spec(spec)
            details = diff_fields(row.spec, new_spec, secrets=secrets)
            if not details:
                return self._read(row, self._default_id(s))
            old_name = row.name
            row.name, row.name_key, row.enabled = spec.name, name_key(spec.name), spec.enabled
            row.spec = new_spec
            row.updated_at = utcnow()
            if secrets:
                row.secret_rotated_at = utcnow()
            record(
                s,
                actor=actor,
                action="update",
                target_type="profile",
                target=old_name,
                details={"changes": details},
            )
            self._commit(s, spec.name)
            return self._read(row, self._default_id(s))

    def apply(
        self, data: dict[str, Any], /, *, actor: str = "system", operator: bool = False
    ) -> tuple[ProfileRead, bool]:
        """Create or update by name; returns the profile and whether it was created."""
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(FieldError("name", "is required"))
        try:
            self.get(name)
        except NotFound:
            return self.create(data, actor=actor, operator=operator), True
        # apply describes the whole profile: sections it leaves out go back to defaults.
        full = parse_spec(
            {k: v for k, v in data.items() if k != "version"} | {"name": name}
        ).model_dump(mode="json")
        for side in _SIDES:
            if full.get(side) is not None:
                given = data.get(side) or {}
                full[side]["password"] = given.get("password")
        return (
            self.update(name, full, version=data.get("version"), actor=actor, operator=operator),
            False,
        )

    def delete(
        self, name: str, /, *, force: bool = False, actor: str = "system"
    ) -> builtins.list[str]:
        """Delete; refused (Conflict) while it is the default or bound, unless ``force``.

        Returns the processes that were unbound.
        """
        with self._sessions() as s:
            row = self._row(s, name)
            processes, is_default = self._usage(s, row)
            if (processes or is_default) and not force:
                raise ProfileInUse(
                    _in_use_message(row.name, processes, is_default, "delete"),
                    processes=processes,
                    is_default=is_default,
                )
            for binding in s.scalars(select(Binding).where(Binding.profile_id == row.id)):
                s.delete(binding)
            if is_default:
                s.delete(s.get(SystemSetting, DEFAULT_PROFILE_KEY))
            record(
                s,
                actor=actor,
                action="delete",
                target_type="profile",
                target=row.name,
                details={"unbound": processes, "was_default": is_default, "force": force},
            )
            s.delete(row)
            s.commit()
            return processes

    def _usage(self, s: Session, row: Profile) -> tuple[builtins.list[str], bool]:
        processes = list(
            s.scalars(
                select(Binding.process)
                .where(Binding.profile_id == row.id)
                .order_by(Binding.process_key)
            )
        )
        return processes, self._default_id(s) == row.id

    def record_test(self, name: str, result: LastTest) -> None:
        """Keep the last connection-test result on the profile (not a configuration change)."""
        with self._sessions() as s:
            row = self._row(s, name)
            stored = result.model_dump(mode="json", exclude={"stale"})
            # what was tested, to show the result as stale once those settings change
            stored["fingerprint"] = _test_fingerprint(row.spec, result.kind, row.secret_rotated_at)
            s.execute(
                update(Profile)
                .where(Profile.id == row.id)
                .values(last_test=stored)
                .execution_options(synchronize_session=False)
            )
            s.commit()

    def _flush(self, s: Session, name: str) -> None:
        try:
            s.flush()
        except IntegrityError:
            s.rollback()
            raise ValidationError(
                FieldError("name", f"a profile named '{name}' already exists")
            ) from None

    def _commit(self, s: Session, name: str) -> None:
        try:
            s.commit()
        except IntegrityError:
            s.rollback()
            raise ValidationError(
                FieldError("name", f"a profile named '{name}' already exists", kind="conflict")
            ) from None
        except StaleDataError:
            s.rollback()
            raise StaleVersion(
                f"Profile '{name}' was changed by someone else meanwhile; reload and retry."
            ) from None


def _in_use_message(name: str, processes: list[str], is_default: bool, verb: str) -> str:
    parts = []
    if is_default:
        parts.append("it is the system default (postroom's own mail uses it)")
    if processes:
        parts.append(f"{len(processes)} process(es) are bound to it: " + ", ".join(processes))
    return (
        f"Cannot {verb} profile '{name}': "
        + " and ".join(parts)
        + ". They would be left without mail. Bind them to another profile first, or force it "
        "(--force / ?force=true), which also removes the bindings."
    )


def _test_fingerprint(spec: dict[str, Any], kind: str, secret_rotated_at: datetime | None) -> str:
    """A digest of the stored settings a test of ``kind`` depends on (no secret in it: a
    changed password shows as a new ``secret_rotated_at``). Name, description, limits and
    the like are left out, so editing them keeps the result current."""
    sections = {"smtp": ("smtp", "sender"), "imap": ("imap",)}.get(kind, ("smtp", "sender", "imap"))
    tested = {key: spec.get(key) for key in sections}
    tested["secret_rotated_at"] = secret_rotated_at.isoformat() if secret_rotated_at else None
    text = json.dumps(tested, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
