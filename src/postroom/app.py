"""The Postroom object: wires settings, database, secrets and services.

The Python API, REST, web UI and CLI all hold one of these.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

import postroom.actions.tables  # noqa: F401  (tables join the metadata)
import postroom.inbound.tables  # noqa: F401
import postroom.notify.tables  # noqa: F401
from postroom.accounts import Accounts
from postroom.actions.service import Actions, rotate_action_secrets
from postroom.actions.tables import ActionKey
from postroom.actions.webhooks import webhook_policy
from postroom.addresses import check_addr_spec
from postroom.admin_sessions import AdminSessions
from postroom.audit import AuditLog, record
from postroom.db.engine import make_engine, make_sessionmaker, upgrade
from postroom.db.tables import OAuth2Config, Profile, SystemSetting, utcnow
from postroom.diagnostics.probe import run_test, single_failure
from postroom.diagnostics.steps import Code, Diagnosis
from postroom.errors import (
    ConfigurationError,
    ConnectionTestsDisabled,
    FieldError,
    KeysNotRotated,
    RateLimited,
    SecretKeyError,
    SecretReferenceError,
    ValidationError,
)
from postroom.hmac_keys import HmacKeys
from postroom.inbound.schemas import InboundEvent
from postroom.inbound.service import Inbound
from postroom.inbound.webhooks import rotate_webhook_secrets
from postroom.net.forwarded import parse_trusted
from postroom.net.policy import NetPolicy
from postroom.net.proxy_spec import parse_proxy_url
from postroom.notify.compose import OutgoingMessage
from postroom.notify.events import Notifier
from postroom.notify.sandbox import TemplateLimits
from postroom.notify.schemas import NotifyResult
from postroom.notify.templates import Templates
from postroom.oauth2.configs import OAuth2Configs
from postroom.oauth2.service import lifecycle_for, rotate_token_secrets
from postroom.outbox.limits import Limits
from postroom.outbox.queue import OutboxQueue
from postroom.outbox.service import Outbox, SendRequest
from postroom.profiles.bindings import BindingRead, Bindings, Explanation
from postroom.profiles.detect import Detection, detect
from postroom.profiles.schemas import LastTest
from postroom.profiles.service import ProfileService
from postroom.secrets import (
    KeyRotation,
    SecretBox,
    SecretReferences,
    load_keys,
    write_key_file,
)
from postroom.send_limits import SendLimits
from postroom.settings import Settings, get_settings
from postroom.throttles import CONNECTION_TESTS, Throttles

__all__ = ["Postroom"]

_KEY_CHECK = "secret_key_check"
_KEY_CHECK_PLAINTEXT = "postroom-key-check"
#: Connection tests a caller (an API key, a web user) may start per minute: a test reaches
#: out to the network, so the endpoint must not become a port scanner.
CONNECTION_TESTS_PER_MINUTE = CONNECTION_TESTS.count


class Postroom:
    """One postroom installation: its database, its keys and its services.

    Use :meth:`open`; close it (or use it as a context manager) when done.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        sessions: sessionmaker[Session],
        box: SecretBox,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions = sessions
        self.box = box
        try:
            self.policy = NetPolicy.from_strings(
                settings.net_deny, settings.net_allow, settings.net_ports, settings.net_profile
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        try:
            proxy = parse_proxy_url(settings.proxy, settings.proxy_password)
        except ValueError as exc:
            raise ConfigurationError(f"POSTROOM_PROXY: {exc}") from None
        if proxy is not None:
            self.policy = dataclasses.replace(self.policy, proxy=proxy)
        try:
            self.trusted_proxies = parse_trusted(settings.trusted_proxies)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self.profiles = ProfileService(sessions, box, unused_days=settings.profile_unused_days)
        self.bindings = Bindings(sessions)
        self.oauth2 = OAuth2Configs(sessions, box)
        self.oauth2_lifecycle = lifecycle_for(self)  # tokens, sign-ins; SMTP/IMAP use it
        self.accounts = Accounts(sessions)
        #: signed-in web sessions and throttle counts: in the database, shared by every process
        self.admin_sessions = AdminSessions(sessions, max_age=timedelta(hours=12))
        self.throttles = Throttles(sessions)
        self.audit = AuditLog(sessions)
        self.hmac_keys = HmacKeys(sessions, box)  # action links, bounce tokens
        self.send_limits = SendLimits.from_settings(settings)
        self.outbox = Outbox(
            sessions, OutboxQueue(sessions), bounce_keys=self.hmac_keys, limits=self.send_limits
        )
        self.limits = Limits(sessions)
        self.templates = Templates(sessions, limits=TemplateLimits.from_settings(settings))
        self.notifications = Notifier(
            sessions, self.outbox, self.templates, public_url=settings.public_url
        )
        try:
            hooks_policy = webhook_policy(self.policy, settings.action_webhook_allow)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self.actions = Actions(
            sessions, box, self.outbox, self.bindings,
            public_url=settings.public_url, policy=self.policy, webhook_policy=hooks_policy,
            limits=self.send_limits,
        )  # fmt: skip
        self.inbound = Inbound(
            sessions, box, self.policy, retention_days=settings.inbound_retention_days
        )
        # a reply whose first word is a choice decides an actionable email
        self.inbound.subscribe(None, self._decide_by_reply, name="actions.decide_by_reply")

    @classmethod
    def open(
        cls,
        data_dir: str | Path | None = None,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        migrate: bool = True,
    ) -> Postroom:
        """Open (and by default migrate) the installation described by the environment.

        Raises :class:`ConfigurationError` (or its :class:`SecretKeyError`) with a message
        saying what to fix when the database or the secret keys are unusable.
        """
        if settings is None:
            settings = get_settings(data_dir=data_dir, database_url=database_url)
        engine = make_engine(settings.resolved_database_url)
        try:
            if migrate:
                upgrade(engine)
            sessions = make_sessionmaker(engine)
            box = _open_box(settings, sessions)
            HmacKeys(sessions, box).current()  # exists before mail is sent (bounce tokens)
        except ConfigurationError:
            engine.dispose()
            raise
        except Exception as exc:  # the one boundary where database faults become ours
            engine.dispose()
            raise ConfigurationError(
                f"Cannot open the database at {_safe_url(settings.resolved_database_url)}: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
        return cls(settings, engine, sessions, box)

    def ping(self) -> bool:
        """Whether the database answers (readiness probes)."""
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Postroom:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _decide_by_reply(self, event: InboundEvent) -> None:
        self.actions.decide_by_reply(event)

    # -- which profile a process uses ---------------------------------------------------------

    def set_default(self, profile: str, /, *, actor: str = "python") -> None:
        """Make ``profile`` the system default."""
        self.bindings.set_default(profile, actor=actor)

    def get_default(self) -> str | None:
        return self.bindings.get_default()

    def bind(self, process: str, profile: str, /, *, actor: str = "python") -> BindingRead:
        """Send ``process``'s mail through ``profile``."""
        return self.bindings.bind(process, profile, actor=actor)

    def unbind(self, process: str, /, *, actor: str = "python") -> None:
        self.bindings.unbind(process, actor=actor)

    def explain(self, process: str, /) -> Explanation:
        """Which profile ``process`` uses, and why."""
        return self.bindings.explain(process)

    # -- sending ----------------------------------------------------------------------------

    def send(
        self,
        message: OutgoingMessage | dict[str, Any],
        /,
        *,
        profile: str | None = None,
        process: str | None = None,
        idempotency_key: str | None = None,
        send_at: datetime | None = None,
    ) -> int:
        """Queue ``message`` durably and return its id (see :meth:`Outbox.send`)."""
        return self.outbox.send(
            message, profile=profile, process=process,
            idempotency_key=idempotency_key, send_at=send_at,
        )  # fmt: skip

    def notify(
        self,
        event: str,
        /,
        *,
        process: str | None = None,
        data: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> NotifyResult:
        """Tell the subscribers of ``event`` (see :meth:`Notifier.notify`)."""
        return self.notifications.notify(
            event, process=process, data=data, idempotency_key=idempotency_key
        )

    def send_many(self, requests: list[SendRequest], /) -> list[int]:
        """Queue a batch in one transaction (see :meth:`Outbox.send_many`)."""
        return self.outbox.send_many(requests)

    # -- connection tests ---------------------------------------------------------------------

    async def atest_profile(
        self,
        name: str | None = None,
        /,
        *,
        settings: dict[str, Any] | None = None,
        imap: bool = False,
        smtp: bool = True,
        send_to: str | None = None,
        roundtrip: bool = False,
        actor: str = "python",
        operator: bool = False,
        limit_key: str | None = None,
    ) -> Diagnosis:
        """Test a saved profile (``name``) or unsaved ``settings``.

        With both, ``settings`` are tested and any secret they leave empty or masked comes
        from the saved profile, while its destination is unchanged. Secret references in
        ``settings`` are accepted and resolved as when saving them (``operator``: the CLI).
        The result of a saved profile's own test is kept on it.
        Raises ValidationError for invalid settings, NotFound for an unknown name,
        ConnectionTestsDisabled when the operator turned tests off, and RateLimited when
        ``limit_key`` (a caller: REST and the web UI pass theirs) used up its tests for
        this minute.
        """
        if self.settings.connection_tests == "disabled":
            raise ConnectionTestsDisabled(
                "Connection tests are disabled on this installation by its operator "
                "(POSTROOM_CONNECTION_TESTS=disabled); ask the operator if you need one."
            )
        if send_to is not None:
            reason = check_addr_spec(send_to)
            if reason:
                raise ValidationError(FieldError("send_to", reason))
        kind = "roundtrip" if roundtrip else ("imap" if imap and not smtp else "smtp")
        try:
            if settings is not None:
                spec = self.profiles.merged_spec(settings, existing=name, operator=operator)
            elif name is not None:
                spec = self.profiles.spec_with_secrets(name)
            else:
                raise ValidationError(FieldError("name", "give a profile name or settings"))
        except SecretReferenceError as exc:
            return single_failure(kind, "secret", Code.SECRET_UNAVAILABLE, exc.message)
        if limit_key is not None:
            # counted in the database with the sign-in throttles: every process sees it
            wait = math.ceil(self.throttles.take(CONNECTION_TESTS, limit_key))
            if wait:
                raise RateLimited(
                    f"At most {CONNECTION_TESTS_PER_MINUTE} connection tests per minute; "
                    f"try again in {wait:.0f} s.",
                    retry_after_s=int(wait),
                )
        diagnosis = await run_test(
            spec, policy=self.policy, smtp=smtp, imap=imap, send_to=send_to, roundtrip=roundtrip
        )
        target = name or spec.name
        if name is not None and settings is None:
            self.profiles.record_test(
                name,
                LastTest(
                    at=diagnosis.started_at,
                    ok=diagnosis.ok,
                    kind=diagnosis.kind,
                    error_code=diagnosis.error.code if diagnosis.error else None,
                ),
            )
        with self.sessions() as s:
            record(
                s,
                actor=actor,
                action="test",
                target_type="profile",
                target=target,
                details={
                    "kind": diagnosis.kind,
                    "ok": diagnosis.ok,
                    "error_code": diagnosis.error.code if diagnosis.error else None,
                    "unsaved": settings is not None,
                    "send_to": send_to,
                },
            )
            s.commit()
        return diagnosis

    def test_profile(self, name: str | None = None, /, **kwargs: Any) -> Diagnosis:
        """Synchronous :meth:`atest_profile` (not for use inside a running event loop)."""
        return asyncio.run(self.atest_profile(name, **kwargs))

    async def adetect_profile(self, address: object) -> Detection:
        """Suggest servers for ``address`` (docs/profiles.md, "Detecting settings"); saves nothing.

        Raises ValidationError (field ``address``) for a malformed address.
        """
        from postroom.net.dns import parse_dns_servers

        try:
            servers = parse_dns_servers(self.settings.dns_servers)
        except ValueError as exc:
            raise ConfigurationError(f"POSTROOM_DNS_SERVERS: {exc}") from None
        return await detect(
            address,
            policy=self.policy,
            dns_servers=servers,
            timeout=self.settings.detect_timeout_s,
            http_port=self.settings.detect_http_port,
            https_port=self.settings.detect_https_port,
        )

    def detect_profile(self, address: object) -> Detection:
        """Synchronous :meth:`adetect_profile` (not for use inside a running event loop)."""
        return asyncio.run(self.adetect_profile(address))

    # -- keys -------------------------------------------------------------------------------

    def rotate_keys(self, *, retire_old: bool = False, actor: str = "cli") -> int:
        """Re-encrypt every stored secret under a new primary key; returns how many.

        With a key file, a new key is generated and written first (old keys stay, so a
        crash midway leaves everything readable). With ``POSTROOM_SECRET_KEYS`` the operator
        puts the new key first in the variable; this re-encrypts under it. A secret no
        key decrypts is skipped, the rest is rotated and committed, then
        :class:`KeysNotRotated` names the skipped ones (old keys are then not retired).
        """
        if self.settings.secret_keys:
            keys = self.box.keys
            if retire_old:
                raise ConfigurationError(
                    "Keys come from POSTROOM_SECRET_KEYS: remove old keys from the variable "
                    "yourself after rotating."
                )
        else:
            keys = [Fernet.generate_key().decode("ascii"), *self.box.keys]
            write_key_file(self.settings.key_file, keys)
        box = KeyRotation(keys, references=self.box.references)
        with self.sessions() as s:
            for profile in s.scalars(select(Profile)):
                for side in ("smtp", "imap"):
                    value = getattr(profile, f"{side}_password")
                    if value is not None:
                        what = f"the {side} password of profile '{profile.name}'"
                        setattr(profile, f"{side}_password", box.rotate(value, what=what))
            for action_key in s.scalars(select(ActionKey)):
                action_key.key = box.rotate(action_key.key, what=f"action key {action_key.kid}")
            for config in s.scalars(select(OAuth2Config)):
                if config.client_secret is not None:
                    config.client_secret = box.rotate(
                        config.client_secret,
                        what=f"the client secret of OAuth2 configuration '{config.name}'",
                    )
            rotate_token_secrets(s, box)
            rotate_webhook_secrets(s, box)
            rotate_action_secrets(s, box)
            count, skipped = box.rotated, list(box.skipped)
            check = s.get(SystemSetting, _KEY_CHECK)
            if check is not None and check.value:
                check.value = SecretBox(keys).rotate(check.value)
            record(
                s,
                actor=actor,
                action="rotate_keys",
                target_type="keys",
                target="secret_keys",
                details={
                    "secrets": count,
                    "skipped": skipped,
                    "retired_old": retire_old and not skipped,
                    "at": utcnow().isoformat(),
                },
            )
            s.commit()
        if retire_old and not skipped:
            write_key_file(self.settings.key_file, keys[:1])
            keys = keys[:1]
        self._replace_box(SecretBox(keys, references=self.box.references))
        if skipped:
            raise KeysNotRotated(
                f"Re-encrypted {count} secret(s), but no configured key decrypts "
                f"{len(skipped)}; they were left as they were:\n"
                + "\n".join(f"  - {what}" for what in skipped)
                + "\nSet them again (e.g. `postroom profile edit NAME --password-stdin`), or "
                "add the key they were encrypted with and rotate again."
                + (" Old keys were not retired." if retire_old else ""),
                rotated=count,
                skipped=skipped,
            )
        return count

    def _replace_box(self, box: SecretBox) -> None:
        self.box = box
        self.profiles = ProfileService(
            self.sessions, box, unused_days=self.settings.profile_unused_days
        )
        self.oauth2 = OAuth2Configs(self.sessions, box)
        self.actions._box = box
        self.hmac_keys.replace_box(box)
        self.inbound.replace_box(box)


def _safe_url(url: str) -> str:
    """The database URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL must still produce a message
        return "(unparseable database URL)"


def _open_box(settings: Settings, sessions: sessionmaker[Session]) -> SecretBox:
    with sessions() as s:
        check = s.get(SystemSetting, _KEY_CHECK)
        has_secrets = check is not None and bool(check.value)
        if has_secrets and not settings.secret_keys and not settings.key_file.exists():
            raise SecretKeyError(
                f"This database holds encrypted secrets, but the key file {settings.key_file} "
                "is missing and POSTROOM_SECRET_KEYS is not set. Restore the key file from your "
                "backup (see docs/operations.md) or set POSTROOM_SECRET_KEYS."
            )
        references = SecretReferences.from_strings(
            settings.secret_ref_env, settings.secret_ref_paths, own_files=(settings.key_file,)
        )
        box = SecretBox(
            load_keys(env_value=settings.secret_keys, key_file=settings.key_file),
            references=references,
        )
        if has_secrets:
            assert check is not None and check.value is not None
            try:
                box.decrypt(check.value)
            except SecretKeyError:
                raise SecretKeyError(
                    "The configured secret keys do not match this database: none of them "
                    "decrypts its secrets. Use the key file or POSTROOM_SECRET_KEYS that belongs "
                    "to this database (newest first; keep old keys until `postroom keys rotate` "
                    "has run)."
                ) from None
        else:
            if check is None:
                s.add(SystemSetting(key=_KEY_CHECK, value=box.encrypt(_KEY_CHECK_PLAINTEXT)))
            else:
                check.value = box.encrypt(_KEY_CHECK_PLAINTEXT)
            s.commit()
        return box
