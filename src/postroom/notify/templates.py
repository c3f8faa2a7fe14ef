"""Mail templates: stored, versioned, previewed on sample data, rendered in a sandbox.

Every save inserts a new version (history is kept); ``version`` is the optimistic lock:
an update names the version it was made from and fails with :class:`StaleVersion` when
someone saved in between. Built-in templates are version 0 and read-only; saving a
template of the same name overrides one, deleting the override brings it back.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from postroom.audit import record
from postroom.errors import Conflict, FieldError, NotFound, StaleVersion, ValidationError
from postroom.notify.builtin_templates import BUILTIN_NAMES, builtin
from postroom.notify.render import Rendered, TemplateError, TemplateSource, render
from postroom.notify.sandbox import DEFAULT_LIMITS, TemplateLimits
from postroom.notify.schemas import TemplateOrigin, TemplateRead, TemplateSpec, TemplateUpdate
from postroom.notify.tables import Subscription, TemplateVersion
from postroom.validation import validate_model

__all__ = ["AUTO_SUBMITTED", "Templates"]

#: RFC 3834: machine-generated mail; well-behaved auto-responders stay silent
AUTO_SUBMITTED = {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"}


def _from_builtin(name: str, version: int = 0) -> TemplateRead | None:
    found = builtin(name)
    if found is None:
        return None
    return TemplateRead(
        name=name, description=found.description, subject=found.subject, html=found.html,
        text=found.text, sample_data=found.sample_data, version=version,
        origin=TemplateOrigin.BUILTIN,
    )  # fmt: skip


def _from_row(row: TemplateVersion) -> TemplateRead:
    return TemplateRead(
        name=row.name, description=row.description, subject=row.subject, html=row.html,
        text=row.text, sample_data=row.sample_data or {}, version=row.version,
        origin=TemplateOrigin.OVERRIDE if row.name in BUILTIN_NAMES else TemplateOrigin.CUSTOM,
        updated_at=row.created_at, updated_by=row.actor, deleted=row.deleted,
    )  # fmt: skip


def _current(name: str, row: TemplateVersion | None) -> TemplateRead | None:
    """The template in force: the newest version, or the built-in when there is none
    (or the newest is a deletion). ``version`` is always the newest row's number."""
    if row is not None and not row.deleted:
        return _from_row(row)
    return _from_builtin(name, row.version if row is not None else 0)


def _not_found(name: str) -> NotFound:
    return NotFound(f"No template named '{name}'. `postroom template list` shows them.")


class Templates:
    """Create, change, list, preview and render templates."""

    def __init__(
        self, sessions: sessionmaker[Session], *, limits: TemplateLimits = DEFAULT_LIMITS
    ) -> None:
        self._sessions = sessions
        #: size, time and memory limits every render of these templates is held to
        self.limits = limits

    # -- reading ----------------------------------------------------------------------------

    @staticmethod
    def _latest(s: Session, name: str) -> TemplateVersion | None:
        return s.scalar(
            select(TemplateVersion)
            .where(TemplateVersion.name == name)
            .order_by(TemplateVersion.version.desc())
            .limit(1)
        )

    def get(self, name: str, /, *, session: Session | None = None) -> TemplateRead:
        """The template in force under ``name``; raises NotFound."""
        if session is not None:
            found = _current(name, self._latest(session, name))
        else:
            with self._sessions() as s:
                found = _current(name, self._latest(s, name))
        if found is None:
            raise _not_found(name)
        return found

    def list(self) -> builtins.list[TemplateRead]:
        """Every template in force (built-ins included), by name."""
        newest = (
            select(TemplateVersion.name, func.max(TemplateVersion.version).label("v"))
            .group_by(TemplateVersion.name)
            .subquery()
        )
        with self._sessions() as s:
            rows = {
                r.name: r
                for r in s.scalars(
                    select(TemplateVersion).join(
                        newest,
                        (TemplateVersion.name == newest.c.name)
                        & (TemplateVersion.version == newest.c.v),
                    )
                )
            }
        found = (_current(n, rows.get(n)) for n in sorted(set(rows) | set(BUILTIN_NAMES)))
        return [t for t in found if t is not None]

    def history(self, name: str, /) -> builtins.list[TemplateRead]:
        """Every saved version, newest first (the built-in, if any, last as version 0)."""
        with self._sessions() as s:
            rows = s.scalars(
                select(TemplateVersion)
                .where(TemplateVersion.name == name)
                .order_by(TemplateVersion.version.desc())
            ).all()
            versions = [_from_row(r) for r in rows]
        shipped = _from_builtin(name)
        if shipped is not None:
            versions.append(shipped)
        if not versions:
            raise _not_found(name)
        return versions

    # -- writing ----------------------------------------------------------------------------

    def create(
        self, spec: TemplateSpec | dict[str, Any], /, *, actor: str = "python"
    ) -> TemplateRead:
        """Save a new template, or the first override of a built-in.

        Raises ValidationError (a part does not compile or fails on its sample data, with
        the line) or Conflict (a template of that name exists: update it instead).
        """
        if not isinstance(spec, TemplateSpec):
            spec = validate_model(TemplateSpec, spec)
        _check(spec, self.limits)
        with self._sessions() as s:
            latest = self._latest(s, spec.name)
            if latest is not None and not latest.deleted:
                raise Conflict(
                    f"A template named '{spec.name}' exists (version {latest.version}); "
                    "update it instead."
                )
            return self._save(s, spec, (latest.version if latest else 0) + 1, actor, "create")

    def update(
        self,
        name: str,
        changes: TemplateUpdate | dict[str, Any],
        /,
        *,
        version: int | None = None,
        actor: str = "python",
    ) -> TemplateRead:
        """Save a new version from ``changes`` (fields left out are kept).

        ``version`` is the one the change was made from (0 for a built-in as shipped); when
        someone saved since, raises StaleVersion. Raises NotFound and ValidationError.
        """
        if not isinstance(changes, TemplateUpdate):
            changes = validate_model(TemplateUpdate, changes)
        with self._sessions() as s:
            current = self.get(name, session=s)
            if version is not None and version != current.version:
                raise StaleVersion(
                    f"Template '{name}' was changed by someone else (now version "
                    f"{current.version}, you edited version {version}). Reload it and apply "
                    "your change again."
                )
            merged = current.model_dump(include=set(TemplateSpec.model_fields))
            merged.update(changes.model_dump(exclude_unset=True))
            for field in ("description", "subject", "sample_data"):  # null = keep, not remove
                if merged[field] is None:
                    merged[field] = getattr(current, field)
            spec = validate_model(TemplateSpec, merged)
            _check(spec, self.limits)
            return self._save(s, spec, current.version + 1, actor, "update")

    def delete(
        self, name: str, /, *, version: int | None = None, actor: str = "python"
    ) -> TemplateRead | None:
        """Delete a template (history is kept); returns the built-in now in force, if any.

        Raises NotFound, StaleVersion, and Conflict for a built-in without an override or
        a template that subscriptions use.
        """
        with self._sessions() as s:
            latest = self._latest(s, name)
            if latest is None or latest.deleted:
                if builtin(name) is not None:
                    raise Conflict(
                        f"'{name}' is a built-in template and cannot be deleted; save a new "
                        "version to change it."
                    )
                raise _not_found(name)
            if version is not None and version != latest.version:
                raise StaleVersion(
                    f"Template '{name}' is at version {latest.version}, not {version}; reload it."
                )
            if builtin(name) is None:
                users = s.scalars(select(Subscription.id).where(Subscription.template == name))
                ids = sorted(users)
                if ids:
                    raise Conflict(
                        f"Template '{name}' is used by subscription(s) {', '.join(map(str, ids))}"
                        "; change or remove them first."
                    )
            s.add(TemplateVersion(name=name, version=latest.version + 1, deleted=True, actor=actor))
            record(s, actor=actor, action="delete", target_type="template", target=name,
                   details={"version": latest.version + 1})  # fmt: skip
            self._commit(s, name)
        return _from_builtin(name, latest.version + 1)

    def _save(
        self, s: Session, spec: TemplateSpec, version: int, actor: str, action: str
    ) -> TemplateRead:
        row = TemplateVersion(
            name=spec.name, version=version, description=spec.description,
            subject=spec.subject, html=spec.html, text=spec.text,
            sample_data=spec.sample_data, actor=actor,
        )  # fmt: skip
        s.add(row)
        record(s, actor=actor, action=action, target_type="template", target=spec.name,
               details={"version": version})  # fmt: skip
        self._commit(s, spec.name)
        return _from_row(row)

    @staticmethod
    def _commit(s: Session, name: str) -> None:
        try:
            s.commit()
        except IntegrityError:
            # another save took this version number first
            s.rollback()
            raise StaleVersion(
                f"Template '{name}' was saved by someone else meanwhile; reload it and retry."
            ) from None

    # -- rendering --------------------------------------------------------------------------

    def source(self, name: str, /, *, session: Session | None = None) -> TemplateSource:
        """The parts of the template in force; raises NotFound."""
        t = self.get(name, session=session)
        return TemplateSource(name=t.name, subject=t.subject, html=t.html, text=t.text)

    def render(
        self, name: str, data: Mapping[str, Any], /, *, session: Session | None = None
    ) -> Rendered:
        """Render the template in force with ``data``; raises TemplateError or NotFound."""
        return render(self.source(name, session=session), data, limits=self.limits)

    def preview(
        self,
        name: str | None = None,
        /,
        *,
        spec: TemplateSpec | dict[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Rendered:
        """Render a saved template (``name``) or unsaved ``spec`` on ``data``, by default
        on its sample data. Raises TemplateError, NotFound or ValidationError."""
        if spec is not None:
            if not isinstance(spec, TemplateSpec):
                spec = validate_model(TemplateSpec, spec)
            source = TemplateSource(spec.name, spec.subject, spec.html, spec.text)
            sample = spec.sample_data
        elif name is not None:
            t = self.get(name)
            source = TemplateSource(t.name, t.subject, t.html, t.text)
            sample = t.sample_data
        else:
            raise ValidationError(FieldError("name", "give a template name or a template"))
        return render(source, sample if data is None else data, limits=self.limits)

    def render_system_mail(self, name: str, data: Mapping[str, Any], /) -> Rendered:
        """Postroom's own mail (``password_reset``, ``user_invitation``…), admins' overrides
        included, with the headers that keep auto-responders quiet. Raises TemplateError."""
        rendered = self.render(name, data)
        rendered.headers.update(AUTO_SUBMITTED)
        return rendered


def _check(spec: TemplateSpec, limits: TemplateLimits) -> None:
    """Refuse a template that does not compile, breaks a limit or fails on its own sample
    data."""
    try:
        render(
            TemplateSource(spec.name, spec.subject, spec.html, spec.text),
            spec.sample_data,
            limits=limits,
        )
    except TemplateError as exc:
        where = f"line {exc.line}: " if exc.line else ""
        raise ValidationError(FieldError(exc.part, where + exc.reason)) from None
