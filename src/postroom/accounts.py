"""Who may use postroom: admin accounts (web UI) and API keys (REST).

Admins may have an email address; a forgotten password is replaced through a single-use
link mailed to it. The link's token is stored only as a SHA-256 hash (it is 256 random bits,
so a slow hash buys nothing), expires after :data:`RESET_TTL`, and dies when it is used, when
another link of the same admin is used, and when the password changes by any path: each
token remembers a fingerprint of the password hash it may replace.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel
from sqlalchemy import ForeignKey, Integer, String, func, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from postroom.addresses import check_addr_spec, check_single_line
from postroom.admin_sessions import end_sessions_of
from postroom.audit import record
from postroom.db.tables import Admin, ApiKey, Base, Profile, utcnow
from postroom.errors import Conflict, FieldError, NotFound, ValidationError
from postroom.profiles.service import name_key
from postroom.senders import SenderScope

__all__ = [
    "LAST_USED_PRECISION",
    "RESET_LIMIT",
    "RESET_TTL",
    "RESET_WINDOW",
    "Accounts",
    "AdminRead",
    "AdminRole",
    "ApiKeyCreated",
    "ApiKeyRead",
    "ApiRole",
    "PasswordReset",
    "Principal",
    "ResetTicket",
]

_KEY_PREFIX = "prk_"
MIN_PASSWORD_LENGTH = 12
#: how long a password reset link works
RESET_TTL = timedelta(minutes=30)
#: how long an admin-issued link works: a reset an admin started, an invitation
ISSUED_RESET_TTL = timedelta(hours=24)
INVITE_TTL = timedelta(days=7)
#: at most this many reset links per admin within RESET_WINDOW; more requests send nothing
RESET_LIMIT = 3
RESET_WINDOW = timedelta(minutes=15)
#: an API key's last_used_at is at most this much older than its last use
LAST_USED_PRECISION = timedelta(minutes=1)
_INVALID_RESET = (
    "This password reset link is not valid any more: it was used, it expired, or the password "
    "was changed since. Ask for a new one."
)


class ApiRole(StrEnum):
    ADMIN = "admin"
    SENDER = "sender"


class AdminRole(StrEnum):
    ADMIN = "admin"
    VIEWER = "viewer"


class ApiKeyRead(BaseModel):
    id: int
    name: str
    role: ApiRole
    prefix: str
    #: the processes and profiles a sender key may send as (None: any)
    processes: list[str] | None = None
    profiles: list[str] | None = None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str


class AdminRead(BaseModel):
    username: str
    role: AdminRole
    email: str | None
    created_at: datetime
    disabled_at: datetime | None = None


@dataclass(frozen=True)
class ResetTicket:
    """A reset link's token (plaintext only here, to be mailed) and whom it is for."""

    token: str
    username: str
    email: str
    expires_at: datetime


class PasswordReset(Base):
    """One password reset link: only the token's hash is kept."""

    __tablename__ = "admin_password_resets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # the password the link may replace: once it changed, the link is dead
    password_fp: Mapped[str] = mapped_column(String(64))
    requested_from: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class Principal(BaseModel):
    """An authenticated caller; ``actor`` is what the audit log records."""

    name: str
    role: str
    kind: str
    #: an API key's id, and what it may send as (None: any)
    key_id: int | None = None
    processes: list[str] | None = None
    profiles: list[str] | None = None

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def scope(self) -> SenderScope:
        """What this caller may send as and read: a sender key only its own records."""
        return SenderScope(
            key_id=self.key_id,
            name=self.name,
            sees_all=self.role == ApiRole.ADMIN,
            processes=tuple(self.processes) if self.processes is not None else None,
            profiles=tuple(self.profiles) if self.profiles is not None else None,
        )


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(
            FieldError("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
        )


def _check_email(value: str | None) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    reason = check_addr_spec(value)
    if reason:
        raise ValidationError(FieldError("email", reason))
    return value


def _check_name(value: str, field: str) -> str:
    value = value.strip()
    if not value or len(value) > 100:
        raise ValidationError(FieldError(field, "must be 1 to 100 characters"))
    reason = check_single_line(value)
    if reason:
        raise ValidationError(FieldError(field, reason))
    return value


class Accounts:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._hasher = PasswordHasher()

    # -- admins -----------------------------------------------------------------------------

    def create_admin(
        self, username: str, password: str, /, *, role: str = "admin",
        email: str | None = None, actor: str = "system",
    ) -> None:  # fmt: skip
        """Create an account; raises ValidationError (name taken, short password, bad email)."""
        username = _check_name(username, "username")
        if role not in AdminRole.__members__.values():
            raise ValidationError(FieldError("role", "must be 'admin' or 'viewer'"))
        _check_password(password)
        email = _check_email(email)
        with self._sessions() as s:
            if s.scalar(select(Admin.id).where(Admin.username_key == name_key(username))):
                raise ValidationError(
                    FieldError("username", f"'{username}' already exists", kind="conflict")
                )
            self._check_email_free(s, email, None)
            s.add(Admin(username=username, username_key=name_key(username), role=role,
                        password_hash=self._hasher.hash(password), email=email))  # fmt: skip
            details = {"role": role, "email": email} if email else {"role": role}
            record(s, actor=actor, action="create", target_type="admin", target=username,
                   details=details)  # fmt: skip
            s.commit()

    def verify_admin(self, username: str, password: str) -> Principal | None:
        """The admin when the password matches, else None (same cost for unknown users)."""
        with self._sessions() as s:
            row = s.scalar(select(Admin).where(Admin.username_key == name_key(username)))
            stored = row.password_hash if row else _dummy_hash()
            try:
                self._hasher.verify(stored, password)
            except (VerificationError, InvalidHashError):
                return None
            if row is None or row.disabled_at is not None:
                return None
            return Principal(name=row.username, role=row.role, kind="web")

    def has_admin(self) -> bool:
        with self._sessions() as s:
            return s.scalar(select(Admin.id).limit(1)) is not None

    def get_admin(self, username: str, /) -> AdminRead:
        """One account (never its password hash); raises NotFound."""
        with self._sessions() as s:
            return AdminRead.model_validate(self._admin(s, username), from_attributes=True)

    def set_email(self, username: str, email: str | None, /, *, actor: str = "system") -> None:
        """Set (or with None/empty, remove) the address password reset links go to.

        Raises NotFound, and ValidationError when the address is invalid or another
        account uses it (a reset request by address must find one account).
        """
        email = _check_email(email)
        with self._sessions() as s:
            row = self._admin(s, username)
            self._check_email_free(s, email, row.id)
            old, row.email = row.email, email
            record(s, actor=actor, action="update", target_type="admin", target=row.username,
                   details={"changes": {"email": [old, email]}})  # fmt: skip
            s.commit()

    def set_password(self, username: str, password: str, /, *, actor: str = "system") -> None:
        """Replace an account's password; its outstanding reset links and its web sessions
        die with the old one."""
        _check_password(password)
        with self._sessions() as s:
            row = self._admin(s, username)
            self._replace_password(s, row, password)
            record(s, actor=actor, action="set_password", target_type="admin", target=row.username)
            s.commit()

    def list_admins(self) -> list[AdminRead]:
        """Every account, by username (never a password hash)."""
        with self._sessions() as s:
            rows = s.scalars(select(Admin).order_by(Admin.username_key))
            return [AdminRead.model_validate(r, from_attributes=True) for r in rows]

    def set_role(self, username: str, role: str, /, *, actor: str = "system") -> AdminRead:
        """Make an account an admin or a viewer (it applies to its open sessions at once).

        Raises ValidationError for an unknown role, NotFound, and Conflict when it would
        leave no enabled admin account.
        """
        if role not in AdminRole.__members__.values():
            raise ValidationError(FieldError("role", "must be 'admin' or 'viewer'"))
        with self._sessions() as s:
            row = self._admin(s, username)
            if row.role != role:
                if row.role == AdminRole.ADMIN and row.disabled_at is None:
                    self._keep_an_admin(s, row, "make it a viewer")
                old, row.role = row.role, role
                record(s, actor=actor, action="update", target_type="admin", target=row.username,
                       details={"changes": {"role": [old, role]}})  # fmt: skip
                s.commit()
            return AdminRead.model_validate(row, from_attributes=True)

    def set_disabled(self, username: str, disabled: bool, /, *, actor: str = "system") -> AdminRead:
        """Disable an account (its sessions and reset links end at once; it cannot sign in
        or ask for a reset link) or enable it again. Raises NotFound, and Conflict when
        disabling would leave no enabled admin account."""
        with self._sessions() as s:
            row = self._admin(s, username)
            if disabled and row.disabled_at is None:
                if row.role == AdminRole.ADMIN:
                    self._keep_an_admin(s, row, "disable it")
                row.disabled_at = utcnow()
                end_sessions_of(s, row.id)
                s.execute(
                    update(PasswordReset)
                    .where(PasswordReset.admin_id == row.id, PasswordReset.used_at.is_(None))
                    .values(used_at=utcnow())
                )
                record(s, actor=actor, action="disable", target_type="admin", target=row.username)
                s.commit()
            elif not disabled and row.disabled_at is not None:
                row.disabled_at = None
                record(s, actor=actor, action="enable", target_type="admin", target=row.username)
                s.commit()
            return AdminRead.model_validate(row, from_attributes=True)

    @staticmethod
    def _keep_an_admin(s: Session, row: Admin, what: str) -> None:
        others = s.scalar(
            select(func.count(Admin.id)).where(
                Admin.id != row.id, Admin.role == AdminRole.ADMIN, Admin.disabled_at.is_(None)
            )
        )
        if not others:
            raise Conflict(
                f"'{row.username}' is the only enabled admin: make another account an admin "
                f"before you {what}."
            )

    @staticmethod
    def _admin(s: Session, username: str) -> Admin:
        row = s.scalar(select(Admin).where(Admin.username_key == name_key(username)))
        if row is None:
            raise NotFound(f"No admin account named '{username}'.")
        return row

    @staticmethod
    def _check_email_free(s: Session, email: str | None, admin_id: int | None) -> None:
        if email is None:
            return
        other = s.scalar(select(Admin.id).where(func.lower(Admin.email) == email.lower()))
        if other is not None and other != admin_id:
            raise ValidationError(FieldError("email", "another account uses this address"))

    def _replace_password(self, s: Session, row: Admin, password: str) -> None:
        row.password_hash = self._hasher.hash(password)
        end_sessions_of(s, row.id)  # whoever knew the old password is signed out everywhere
        s.execute(
            update(PasswordReset)
            .where(PasswordReset.admin_id == row.id, PasswordReset.used_at.is_(None))
            .values(used_at=utcnow())
        )

    # -- password reset links ---------------------------------------------------------------

    def issue_reset_link(
        self, username: str, /, *, actor: str, invite: bool = False
    ) -> ResetTicket:
        """A reset link an admin makes for another account (to show or to mail): it works
        once, for :data:`ISSUED_RESET_TTL` (an invitation: :data:`INVITE_TTL`), and dies like
        any reset link. Raises NotFound, and Conflict for a disabled account."""
        now = utcnow()
        ttl = INVITE_TTL if invite else ISSUED_RESET_TTL
        with self._sessions() as s:
            row = self._admin(s, username)
            if row.disabled_at is not None:
                raise Conflict(f"'{row.username}' is disabled: enable it first.")
            token = secrets.token_urlsafe(32)
            s.add(PasswordReset(admin_id=row.id, token_hash=_hash_key(token),
                                password_fp=_fingerprint(row.password_hash),
                                requested_from=actor[:100], created_at=now,
                                expires_at=now + ttl))  # fmt: skip
            record(s, actor=actor, action="invite" if invite else "issue_reset_link",
                   target_type="admin", target=row.username,
                   details={"expires_at": (now + ttl).isoformat()})  # fmt: skip
            s.commit()
            return ResetTicket(token, row.username, row.email or "", now + ttl)

    def invite_admin(
        self, username: str, email: str, /, *, role: str = "admin", actor: str = "system"
    ) -> ResetTicket:
        """Create an account with no usable password and an invitation link (a reset link
        valid :data:`INVITE_TTL`) through which the invitee sets one. Raises ValidationError
        naming every bad field (an email address is required)."""
        errors: list[FieldError] = []
        if not (email or "").strip():
            errors.append(FieldError("email", "is required: the invitation is mailed there"))
        else:
            try:
                _check_email(email)
            except ValidationError as exc:
                errors += exc.errors
        try:
            _check_name(username, "username")
        except ValidationError as exc:
            errors += exc.errors
        if role not in AdminRole.__members__.values():
            errors.append(FieldError("role", "must be 'admin' or 'viewer'"))
        if errors:
            raise ValidationError(errors)
        # nobody knows this password: the account is usable only through the link
        self.create_admin(username, secrets.token_urlsafe(32), role=role, email=email, actor=actor)
        return self.issue_reset_link(username, actor=actor, invite=True)

    def request_password_reset(
        self, login: str, /, *, requested_from: str | None = None
    ) -> ResetTicket | None:
        """A new reset link for the admin whose username or email address is ``login``.

        Returns None, and makes no link, when no account matches, when it has no email
        address (recorded in the audit log), or when it already had :data:`RESET_LIMIT`
        links within :data:`RESET_WINDOW`. Never raises for what ``login`` says.
        """
        login = login.strip()
        if not login or len(login) > 254:
            return None
        now = utcnow()
        with self._sessions() as s:
            row = s.scalar(select(Admin).where(Admin.username_key == name_key(login)))
            if row is None and "@" in login:
                row = s.scalar(select(Admin).where(func.lower(Admin.email) == login.lower()))
            if row is None or row.disabled_at is not None:
                return None
            if not row.email:
                record(s, actor="web:password-reset", action="request_password_reset",
                       target_type="admin", target=row.username,
                       details={"mail_sent": False, "error": "the account has no email address",
                                "requested_from": requested_from})  # fmt: skip
                s.commit()
                return None
            recent = s.scalar(
                select(func.count(PasswordReset.id)).where(
                    PasswordReset.admin_id == row.id,
                    PasswordReset.created_at > now - RESET_WINDOW,
                )
            )
            if (recent or 0) >= RESET_LIMIT:
                return None
            token = secrets.token_urlsafe(32)
            s.add(PasswordReset(admin_id=row.id, token_hash=_hash_key(token),
                                password_fp=_fingerprint(row.password_hash),
                                requested_from=(requested_from or "")[:100] or None,
                                created_at=now, expires_at=now + RESET_TTL))  # fmt: skip
            s.commit()
            return ResetTicket(token, row.username, row.email, now + RESET_TTL)

    def record_reset_mail(
        self, ticket: ResetTicket, /, *, outbox_id: int | None = None, error: str | None = None
    ) -> None:
        """Audit what became of a link's mail; a link whose mail failed is voided."""
        with self._sessions() as s:
            details: dict[str, object] = {"mail_sent": error is None, "to": ticket.email}
            if error is None:
                details["outbox_id"] = outbox_id
            else:
                details["error"] = error
                s.execute(
                    update(PasswordReset)
                    .where(PasswordReset.token_hash == _hash_key(ticket.token))
                    .values(used_at=utcnow())
                )
            record(s, actor="web:password-reset", action="request_password_reset",
                   target_type="admin", target=ticket.username, details=details)  # fmt: skip
            s.commit()

    def _valid_reset(self, s: Session, token: str) -> tuple[PasswordReset, Admin] | None:
        if not token or len(token) > 100:
            return None
        link = s.scalar(select(PasswordReset).where(PasswordReset.token_hash == _hash_key(token)))
        if link is None or link.used_at is not None or link.expires_at <= utcnow():
            return None
        admin = s.get(Admin, link.admin_id)
        if (
            admin is None
            or admin.disabled_at is not None
            or not hmac.compare_digest(link.password_fp, _fingerprint(admin.password_hash))
        ):
            return None
        return link, admin

    def reset_link_user(self, token: str, /) -> str | None:
        """The username a reset link is for, or None when it is not valid (any more)."""
        with self._sessions() as s:
            found = self._valid_reset(s, token)
            return found[1].username if found else None

    def reset_password(self, token: str, password: str, /) -> str:
        """Set a new password through a reset link and void the link; returns the username.

        Raises NotFound when the link is not valid (any more), ValidationError when the
        password is too short (the link then stays valid).
        """
        with self._sessions() as s:
            found = self._valid_reset(s, token)
            if found is None:
                raise NotFound(_INVALID_RESET)
            link, admin = found
            _check_password(password)
            used = s.execute(
                update(PasswordReset)
                .where(PasswordReset.id == link.id, PasswordReset.used_at.is_(None))
                .values(used_at=utcnow())
            )
            if getattr(used, "rowcount", 0) != 1:  # another request used it first
                raise NotFound(_INVALID_RESET)
            self._replace_password(s, admin, password)
            record(s, actor="web:password-reset", action="reset_password",
                   target_type="admin", target=admin.username,
                   details={"requested_from": link.requested_from})  # fmt: skip
            s.commit()
            return admin.username

    # -- API keys ---------------------------------------------------------------------------

    def create_api_key(
        self, name: str, /, *, role: str, processes: list[str] | None = None,
        profiles: list[str] | None = None, actor: str = "system",
    ) -> ApiKeyCreated:  # fmt: skip
        """Create a key; the secret is in the result only, never stored or shown again.

        A sender key may be limited to ``processes`` and ``profiles`` (names; None = any):
        sending as anything else is refused with PermissionDenied. Raises ValidationError
        listing every bad field (a taken name, an unknown profile, …)."""
        errors: list[FieldError] = []
        try:
            name = _check_name(name, "name")
        except ValidationError as exc:
            errors += exc.errors
        if role not in ApiRole.__members__.values():
            errors.append(FieldError("role", "must be 'admin' or 'sender'"))
        elif role == ApiRole.ADMIN and (processes is not None or profiles is not None):
            errors.append(
                FieldError(
                    "processes" if processes is not None else "profiles",
                    "only a sender key can be limited: an admin key can change bindings anyway",
                )
            )
        errors += _check_scope_list(processes, "processes", max_length=200)
        errors += _check_scope_list(profiles, "profiles", max_length=100)
        key = _KEY_PREFIX + secrets.token_urlsafe(32)
        with self._sessions() as s:
            if profiles and not any(e.field == "profiles" for e in errors):
                # stored as the profiles are named now (a renamed profile falls out of scope)
                named = {
                    r.name_key: r.name
                    for r in s.scalars(
                        select(Profile).where(Profile.name_key.in_([name_key(p) for p in profiles]))
                    )
                }
                missing = [p for p in profiles if name_key(p) not in named]
                if missing:
                    errors.append(
                        FieldError("profiles", f"no profile named {', '.join(map(repr, missing))}")
                    )
                profiles = [named.get(name_key(p), p) for p in profiles]
            if not any(e.field == "name" for e in errors) and s.scalar(
                select(ApiKey.id).where(ApiKey.name == name)
            ):
                errors.append(FieldError("name", f"an API key named '{name}' exists"))
            if errors:
                raise ValidationError(errors)
            row = ApiKey(name=name, role=role, prefix=key[:12], key_hash=_hash_key(key),
                         processes=processes, profiles=profiles)  # fmt: skip
            s.add(row)
            details: dict[str, object] = {"role": role}
            if processes is not None:
                details["processes"] = processes
            if profiles is not None:
                details["profiles"] = profiles
            record(s, actor=actor, action="create", target_type="api_key", target=name,
                   details=details)  # fmt: skip
            s.commit()
            return ApiKeyCreated(
                key=key, **ApiKeyRead.model_validate(row, from_attributes=True).model_dump()
            )

    def list_api_keys(self) -> list[ApiKeyRead]:
        with self._sessions() as s:
            rows = s.scalars(select(ApiKey).order_by(ApiKey.name))
            return [ApiKeyRead.model_validate(r, from_attributes=True) for r in rows]

    def revoke_api_key(self, name: str, /, *, actor: str = "system") -> None:
        with self._sessions() as s:
            row = s.scalar(select(ApiKey).where(ApiKey.name == name))
            if row is None or row.revoked_at is not None:
                raise NotFound(f"No active API key named '{name}'.")
            row.revoked_at = utcnow()
            record(s, actor=actor, action="revoke", target_type="api_key", target=name)
            s.commit()

    @staticmethod
    def _note_use(s: Session, row: ApiKey) -> None:
        """Write ``last_used_at``, at most once per :data:`LAST_USED_PRECISION` and key: a
        busy key costs a read per request, not a write (the update's condition makes two
        processes racing write once)."""
        now = utcnow()
        if row.last_used_at is not None and now - row.last_used_at < LAST_USED_PRECISION:
            return
        s.execute(
            update(ApiKey)
            .where(
                ApiKey.id == row.id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - LAST_USED_PRECISION),
            )
            .values(last_used_at=now)
        )
        s.commit()

    def verify_api_key(self, key: str) -> Principal | None:
        if not key.startswith(_KEY_PREFIX) or len(key) > 200:
            return None
        with self._sessions() as s:
            for row in s.scalars(select(ApiKey).where(ApiKey.prefix == key[:12])):
                if row.revoked_at is None and hmac.compare_digest(row.key_hash, _hash_key(key)):
                    self._note_use(s, row)
                    return Principal(name=row.name, role=row.role, kind="api", key_id=row.id,
                                     processes=row.processes, profiles=row.profiles)  # fmt: skip
        return None


def _check_scope_list(values: list[str] | None, field: str, *, max_length: int) -> list[FieldError]:
    """Problems with a key's list of processes or profiles (None: no limit)."""
    if values is None:
        return []
    if not isinstance(values, list) or not values or len(values) > 100:
        return [FieldError(field, "give 1 to 100 names, or leave it out for no limit")]
    errors = []
    for value in values:
        if not isinstance(value, str) or not value.strip() or len(value) > max_length:
            errors.append(FieldError(field, f"each name is 1 to {max_length} characters"))
        elif reason := check_single_line(value):
            errors.append(FieldError(field, reason))
    return errors[:1]


@functools.cache
def _dummy_hash() -> str:
    return PasswordHasher().hash("postroom-dummy-password-for-timing")
