"""``postroom doctor``: what an installation runs with, as an operator's checklist.

Read-only: it opens nothing for writing, creates no file or directory, runs no migration
and prints no secret (the database URL without its password, key files by path and mode).
Each :class:`Check` has a status — ``ok``, ``warn`` (works, but a demanding operator would
change it), ``fail`` (it will not work) or ``info`` — and, unless ok, what to change.
"""

from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import postroom
from postroom.net.policy import NetPolicy
from postroom.settings import Settings

__all__ = ["Check", "Status", "run_checks", "summary"]

Status = Literal["ok", "info", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    name: str
    status: Status
    value: str
    advice: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _private(path: Path, what: str, name: str) -> Check:
    """A file or directory only its owner may read: anything for group/others is a warning."""
    mode = _mode(path)
    shown = f"{path} (mode {mode:04o})"
    if mode & 0o077:
        return Check(
            name, "warn", shown,
            f"{what} is open to other users of this machine; run `chmod "
            f"{'700' if path.is_dir() else '600'} {path}`.",
        )  # fmt: skip
    return Check(name, "ok", shown)


def _version() -> Check:
    return Check("version", "info", postroom.__version__)


def _network(settings: Settings) -> Check:
    try:
        policy = NetPolicy.from_strings(
            settings.net_deny, settings.net_allow, settings.net_ports, settings.net_profile
        )
    except ValueError as exc:
        return Check("network profile", "fail", settings.net_profile, str(exc))
    ports = ", ".join(str(p) for p in sorted(policy.ports)) or "any"
    parts = [f"{policy.profile} (ports: {ports}"]
    if policy.deny:
        parts.append(f"; also denied: {', '.join(map(str, policy.deny))}")
    if policy.allow:
        parts.append(f"; allowed through: {', '.join(map(str, policy.allow))}")
    value = "".join(parts) + ")"
    if not policy.hardened:
        return Check(
            "network profile", "warn", value,
            "Profiles and connection tests may reach loopback and private networks. Where "
            "admins are not fully trusted or the API is exposed, set "
            "POSTROOM_NET_PROFILE=hardened (allow a private relay with POSTROOM_NET_ALLOW).",
        )  # fmt: skip
    return Check("network profile", "ok", value)


def _connection_tests(settings: Settings) -> Check:
    from postroom.app import CONNECTION_TESTS_PER_MINUTE

    if settings.connection_tests == "disabled":
        return Check("connection tests", "ok", "disabled (POSTROOM_CONNECTION_TESTS=disabled)")
    return Check(
        "connection tests", "info",
        f"enabled for admins, {CONNECTION_TESTS_PER_MINUTE} per caller per minute "
        "(POSTROOM_CONNECTION_TESTS=disabled turns them off everywhere)",
    )  # fmt: skip


def _data_dir(settings: Settings) -> Check:
    path = settings.data_dir.resolve()
    if not path.exists():
        return Check("data directory", "info", f"{path} (not created yet)")
    if not path.is_dir():
        return Check("data directory", "fail", str(path), "It is not a directory.")
    return _private(path, "The data directory", "data directory")


def _keys(settings: Settings) -> Check:
    if settings.secret_keys:
        count = len([k for k in settings.secret_keys.split(",") if k.strip()])
        return Check("secret keys", "ok", f"POSTROOM_SECRET_KEYS ({count} key(s), newest first)")
    path = settings.key_file.resolve()
    if not path.exists():
        return Check(
            "secret keys", "info", f"key file {path} (created on first start)",
            "Back it up with the database: without it stored passwords cannot be read.",
        )  # fmt: skip
    check = _private(path, "The key file", "secret keys")
    return Check(check.name, check.status, f"key file {check.value}", check.advice)


def _database(settings: Settings) -> list[Check]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = settings.resolved_database_url
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - a malformed URL is what this check reports
        return [Check("database", "fail", "(unparseable POSTROOM_DATABASE_URL)",
                      "Fix POSTROOM_DATABASE_URL.")]  # fmt: skip
    shown = parsed.render_as_string(hide_password=True)
    checks: list[Check] = []
    sqlite_file: Path | None = None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        sqlite_file = Path(str(parsed.database))
        if not sqlite_file.exists():
            return [Check("database", "info", f"{shown} (not created yet)")]
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            applied = _applied(conn)
    except Exception as exc:  # noqa: BLE001 - any driver fault is the finding
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [Check("database", "fail", shown, f"Cannot connect: {first[:200]}")]
    finally:
        engine.dispose()
    backend = parsed.get_backend_name()
    many = "" if backend == "postgresql" else " — one machine; PostgreSQL for many workers"
    checks.append(Check("database", "ok", f"{shown} ({backend}{many})"))
    heads, missing = _missing(applied)
    if missing:
        checks.append(
            Check(
                "database schema",
                "warn",
                f"at {', '.join(applied) or 'nothing'}",
                f"Missing {', '.join(missing)}: run `postroom db upgrade` (serve does it too).",
            )  # fmt: skip
        )
    else:
        checks.append(Check("database schema", "ok", f"up to date ({', '.join(heads)})"))
    if sqlite_file is not None:
        checks.append(_private(sqlite_file.resolve(), "The database file", "database file"))
    return checks


def _applied(conn: Any) -> list[str]:
    from alembic.runtime.migration import MigrationContext

    return sorted(MigrationContext.configure(conn).get_current_heads())


def _missing(applied: list[str]) -> tuple[list[str], list[str]]:
    """The migration heads, and those not applied (nor below an applied revision)."""
    from alembic.script import ScriptDirectory

    import postroom.db.migrations as migrations

    script = ScriptDirectory(str(Path(migrations.__file__).parent))
    heads = sorted(script.get_heads())
    done = {r.revision for r in script.iterate_revisions(tuple(applied), "base")}
    return heads, [h for h in heads if h not in done]


def _public_url(settings: Settings) -> Check:
    url = settings.public_url
    if not url:
        return Check(
            "public URL", "warn", "not set",
            "Action links and the OAuth2 redirect URI are then built from each request's "
            "Host header; set POSTROOM_PUBLIC_URL to the https:// address people use.",
        )  # fmt: skip
    if not url.startswith("https://"):
        return Check(
            "public URL", "warn", url,
            "Not https: session cookies go without the Secure flag and links travel in "
            "clear; put postroom behind TLS and set an https:// POSTROOM_PUBLIC_URL.",
        )  # fmt: skip
    return Check("public URL", "ok", url)


def _listen(settings: Settings) -> Check:
    where = f"{settings.host}:{settings.port}"
    if settings.host in ("127.0.0.1", "::1", "localhost"):
        return Check("listens on", "ok", f"{where} (this machine only; put a TLS proxy in front)")
    return Check(
        "listens on", "info", where,
        "Reachable from the network: make sure only your TLS proxy can reach it.",
    )  # fmt: skip


def run_checks(settings: Settings) -> list[Check]:
    """Every check of the installation described by ``settings``, in checklist order."""
    return [
        _version(),
        _network(settings),
        _connection_tests(settings),
        *_database(settings),
        _data_dir(settings),
        _keys(settings),
        _public_url(settings),
        _listen(settings),
        Check(
            "environment",
            "info",
            ", ".join(sorted(k for k in os.environ if k.startswith("POSTROOM_")))
            or "no POSTROOM_*",
        ),  # fmt: skip
    ]


def summary(checks: list[Check]) -> Status:
    """The worst status of ``checks``."""
    order: list[Status] = ["ok", "info", "warn", "fail"]
    return max((c.status for c in checks), key=order.index, default="ok")
