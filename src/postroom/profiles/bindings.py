"""Which profile a process uses: the system default, process bindings, and the explainer."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from postroom.addresses import check_single_line
from postroom.audit import record
from postroom.db.tables import Binding, Profile, SystemSetting
from postroom.errors import Conflict, FieldError, NotFound, ValidationError
from postroom.profiles.service import DEFAULT_PROFILE_KEY, name_key

__all__ = ["BindingRead", "Bindings", "Explanation", "Reason"]


class Reason(StrEnum):
    BINDING = "binding"
    DEFAULT = "default"
    NONE = "none"


class BindingRead(BaseModel):
    process: str
    profile: str


class Explanation(BaseModel):
    """Which profile ``process`` gets, and why, in a sentence for people."""

    process: str
    profile: str | None
    reason: Reason
    enabled: bool | None
    message: str


def _check_process(process: str) -> str:
    process = process.strip()
    if not process:
        raise ValidationError(FieldError("process", "must not be empty"))
    if len(process) > 200:
        raise ValidationError(FieldError("process", "must be at most 200 characters"))
    reason = check_single_line(process)
    if reason:
        raise ValidationError(FieldError("process", reason))
    return process


class Bindings:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def _profile(self, s: Session, name: str, field: str = "profile") -> Profile:
        row = s.scalar(select(Profile).where(Profile.name_key == name_key(name)))
        if row is None:
            raise NotFound(f"No profile named '{name}'. `postroom profile list` shows them.")
        return row

    def set_default(self, profile: str, /, *, actor: str = "system") -> None:
        """Make ``profile`` the system default (postroom's own mail and unbound processes)."""
        with self._sessions() as s:
            row = self._profile(s, profile)
            if not row.enabled:
                raise Conflict(
                    f"Profile '{row.name}' is disabled; enable it before making it the default."
                )
            setting = s.get(SystemSetting, DEFAULT_PROFILE_KEY)
            old = setting.value if setting else None
            if setting is None:
                s.add(SystemSetting(key=DEFAULT_PROFILE_KEY, value=str(row.id)))
            else:
                setting.value = str(row.id)
            old_row = s.get(Profile, int(old)) if old else None
            old_name = old_row.name if old_row else None
            record(
                s,
                actor=actor,
                action="set_default",
                target_type="profile",
                target=row.name,
                details={"previous": old_name},
            )
            s.commit()

    def get_default(self) -> str | None:
        with self._sessions() as s:
            setting = s.get(SystemSetting, DEFAULT_PROFILE_KEY)
            if setting is None or not setting.value:
                return None
            row = s.get(Profile, int(setting.value))
            return row.name if row else None

    def bind(self, process: str, profile: str, /, *, actor: str = "system") -> BindingRead:
        """Bind ``process`` to ``profile`` (replacing an earlier binding)."""
        try:
            process = _check_process(process)
        except ValidationError as exc:
            # a bad name and an unknown profile are named together, not one round apart
            with self._sessions() as s:
                try:
                    self._profile(s, profile)
                except NotFound as missing:
                    raise ValidationError(
                        [*exc.errors, FieldError("profile", missing.message)]
                    ) from None
            raise
        with self._sessions() as s:
            row = self._profile(s, profile)
            binding = s.scalar(select(Binding).where(Binding.process_key == name_key(process)))
            previous = None
            if binding is None:
                s.add(Binding(process=process, process_key=name_key(process), profile_id=row.id))
            else:
                previous_row = s.get(Profile, binding.profile_id)
                previous = previous_row.name if previous_row else None
                binding.profile_id = row.id
                binding.process = process
            record(
                s,
                actor=actor,
                action="bind",
                target_type="process",
                target=process,
                details={"profile": row.name, "previous": previous},
            )
            s.commit()
            return BindingRead(process=process, profile=row.name)

    def unbind(self, process: str, /, *, actor: str = "system") -> None:
        process = _check_process(process)
        with self._sessions() as s:
            binding = s.scalar(select(Binding).where(Binding.process_key == name_key(process)))
            if binding is None:
                raise NotFound(f"Process '{process}' has no binding.")
            row = s.get(Profile, binding.profile_id)
            s.delete(binding)
            record(
                s,
                actor=actor,
                action="unbind",
                target_type="process",
                target=binding.process,
                details={"profile": row.name if row else None},
            )
            s.commit()

    def list(self, *, profile: str | None = None) -> list[BindingRead]:
        with self._sessions() as s:
            q = (
                select(Binding.process, Profile.name)
                .join(Profile, Profile.id == Binding.profile_id)
                .order_by(Binding.process_key)
            )
            if profile is not None:
                q = q.where(Profile.name_key == name_key(profile))
            return [BindingRead(process=p, profile=n) for p, n in s.execute(q)]

    def explain(self, process: str, /) -> Explanation:
        """Which profile ``process`` uses and why: its binding, else the default, else none."""
        process = _check_process(process)
        with self._sessions() as s:
            binding = s.scalar(select(Binding).where(Binding.process_key == name_key(process)))
            if binding is not None:
                row = s.get(Profile, binding.profile_id)
                assert row is not None  # the foreign key cascades deletes
                note = "" if row.enabled else " That profile is disabled, so its mail is held."
                return Explanation(
                    process=process,
                    profile=row.name,
                    reason=Reason.BINDING,
                    enabled=row.enabled,
                    message=f"Process '{process}' is bound to profile '{row.name}'.{note}",
                )
            setting = s.get(SystemSetting, DEFAULT_PROFILE_KEY)
            row = s.get(Profile, int(setting.value)) if setting and setting.value else None
            if row is not None:
                return Explanation(
                    process=process,
                    profile=row.name,
                    reason=Reason.DEFAULT,
                    enabled=row.enabled,
                    message=f"Process '{process}' has no binding, so it uses the system default "
                    f"profile '{row.name}'.",
                )
            return Explanation(
                process=process,
                profile=None,
                reason=Reason.NONE,
                enabled=None,
                message=f"Process '{process}' has no binding and there is no system default: "
                "it cannot send mail. Bind it (`postroom bind`) or set a default "
                "(`postroom profile set-default`).",
            )
