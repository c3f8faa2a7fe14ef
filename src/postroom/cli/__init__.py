"""The `postroom` command. Exit codes: 0 ok, 1 the thing failed, 2 bad input."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from postroom.cli._common import (
    CLI_ACTOR,
    PlainHelpGroup,
    bad_input,
    fail,
    group,
    handle_errors,
    opened,
    print_json,
    read_secret,
    table,
)
from postroom.cli.events import events_app, subscription_app
from postroom.cli.inbound import inbound_app
from postroom.cli.oauth2 import oauth2_app
from postroom.cli.outbox import outbox_app, send, worker
from postroom.cli.profiles import bind, explain, profile_app, unbind
from postroom.cli.templates import template_app

if TYPE_CHECKING:
    import socket

    from postroom.app import Postroom

__all__ = ["cli", "main"]

T = TypeVar("T")

cli = typer.Typer(
    name="postroom",
    help="Email for automation platforms: profiles, diagnosis, delivery, inbound mail.",
    no_args_is_help=True,
    rich_markup_mode=None,
    cls=PlainHelpGroup,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cli.add_typer(profile_app, name="profile")
cli.add_typer(oauth2_app, name="oauth2")
cli.command("bind")(bind)
cli.command("unbind")(unbind)
cli.command("explain")(explain)
cli.command("send")(send)
cli.command("worker")(worker)
cli.add_typer(outbox_app, name="outbox")
cli.add_typer(template_app, name="template")
cli.add_typer(subscription_app, name="subscription")
cli.add_typer(events_app, name="events")
cli.add_typer(inbound_app, name="inbound")

db_app = group("Database schema.")
keys_app = group("Secret keys that encrypt stored passwords.")
admin_app = group("Admin accounts of the web UI.")
apikey_app = group("API keys for the REST API.")
cli.add_typer(db_app, name="db")
cli.add_typer(keys_app, name="keys")
cli.add_typer(admin_app, name="admin")
cli.add_typer(apikey_app, name="apikey")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from stdin.")
]
PasswordEnvOpt = Annotated[
    str | None,
    typer.Option("--password-env", metavar="VAR", help="Read the password from this variable."),
]


@cli.command()
@handle_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [POSTROOM_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [POSTROOM_PORT].")] = None,
) -> None:
    """Run postroom: web UI, REST API and a delivery worker (migrates the database first)."""
    from postroom.aio import run as run_loop

    with opened() as app:
        host = host or app.settings.host
        port = port or app.settings.port
        where = (
            app.settings.database_url
            and "the configured database"
            or (f"SQLite in {app.settings.data_dir.resolve()}")
        )
        shown = f"[{host}]" if ":" in host else host
        # Listen before saying anything: on a busy port, the URL and the setup link would
        # point at whatever server holds it.
        sock = _listen(host, port)
        typer.echo(f"postroom is running at http://{shown}:{port}/  ({where})", err=True)
        typer.echo(f"REST API: http://{shown}:{port}/api/v1  (stop with Ctrl+C)", err=True)
        from postroom.web import setup_url

        link = setup_url(
            app, base_url=None if app.settings.public_url else f"http://{shown}:{port}"
        )
        if link:
            typer.echo(
                f"No admin account yet. Create the first one here (the link works once): {link}",
                err=True,
            )
        run_loop(_serve(app, host, port, sock))


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or an error that says what to change."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            fail(
                f"{where} is already in use (another postroom or another program). Stop it, "
                "or choose a free port with --port or POSTROOM_PORT."
            )
        if exc.errno == errno.EACCES:
            fail(
                f"not allowed to listen on {where} (ports below 1024 need privileges). "
                "Choose another port with --port or POSTROOM_PORT."
            )
        fail(
            f"cannot listen on {where}: {exc.strerror or exc}. Check --host/POSTROOM_HOST "
            "and --port/POSTROOM_PORT."
        )


async def _serve(app: Postroom, host: str, port: int, sock: socket.socket) -> None:
    """The web server, a delivery worker and the IMAP listeners in one process."""
    import asyncio
    import signal

    import uvicorn

    from postroom.api.server import server_config
    from postroom.outbox.worker import Worker

    server = uvicorn.Server(server_config(app, host, port))
    worker = Worker(app)
    worker_task = asyncio.create_task(worker.run())
    inbound = app.inbound.runner()
    inbound_task = asyncio.create_task(inbound.run())

    def stop(*_: object) -> None:
        server.should_exit = True
        worker.stop()
        inbound.stop()

    # uvicorn restores the handlers it found and then raises the signal again once it has
    # stopped; with these in place that ends here, so the worker can finish or give back
    # what it holds and the process exits 0 instead of dying of SIGTERM
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        await server.serve(sockets=[sock])
    finally:
        stop()
        await asyncio.gather(worker_task, inbound_task)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@db_app.command("upgrade")
@handle_errors
def db_upgrade() -> None:
    """Bring the database schema up to date (also done by `serve`)."""
    from postroom.db.engine import current_heads

    with opened() as app:
        heads = ", ".join(current_heads(app.engine))
        typer.echo(f"Database schema is up to date (revisions {heads}).")


@keys_app.command("rotate")
@handle_errors
def keys_rotate(
    retire_old: Annotated[
        bool, typer.Option("--retire-old", help="Drop old keys from the key file afterwards.")
    ] = False,
) -> None:
    """Re-encrypt every stored secret under a new primary key."""
    with opened() as app:
        count = app.rotate_keys(retire_old=retire_old, actor=CLI_ACTOR)
        source = "POSTROOM_SECRET_KEYS" if app.settings.secret_keys else str(app.settings.key_file)
    typer.echo(f"Re-encrypted {count} secret(s) under the new primary key ({source}).")
    if not retire_old and not app.settings.secret_keys:
        typer.echo(
            "Old keys stay in the key file; drop them with --retire-old once backups are renewed."
        )


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new key (for POSTROOM_SECRET_KEYS)."""
    from cryptography.fernet import Fernet

    typer.echo(Fernet.generate_key().decode("ascii"))


@admin_app.command("create")
@handle_errors
def admin_create(
    username: str,
    password_stdin: PasswordStdinOpt = False,
    password_env: PasswordEnvOpt = None,
    role: Annotated[str, typer.Option(help="admin | viewer")] = "admin",
    email: Annotated[
        str | None,
        typer.Option("--email", metavar="ADDR", help="Where password reset links are sent."),
    ] = None,
) -> None:
    """Create a web UI account."""
    password = _password(password_stdin, password_env, prompt="Password")
    with opened() as app:
        app.accounts.create_admin(username, password, role=role, email=email, actor=CLI_ACTOR)
    typer.echo(f"Created {role} '{username}'.")


@admin_app.command("list")
@handle_errors
def admin_list(as_json: JsonOpt = False) -> None:
    """List web UI accounts (never a password)."""
    with opened() as app:
        admins = app.accounts.list_admins()
    _print_list(
        admins,
        as_json,
        lambda a: [
            a.username,
            a.role,
            a.email or "-",
            f"{a.created_at:%Y-%m-%d}",
            "disabled" if a.disabled_at else "enabled",
        ],
        ["username", "role", "email", "created", "state"],
        empty="No admin accounts.",
    )


@admin_app.command("disable")
@handle_errors
def admin_disable(
    username: str,
    enable: Annotated[bool, typer.Option("--enable", help="Enable the account again.")] = False,
) -> None:
    """Disable an account: its sessions end at once and it cannot sign in (--enable undoes
    it). The last enabled admin cannot be disabled (exit 1)."""
    with opened() as app:
        app.accounts.set_disabled(username, not enable, actor=CLI_ACTOR)
    typer.echo(f"{'Enabled' if enable else 'Disabled'} '{username}'.")


@admin_app.command("set-role")
@handle_errors
def admin_set_role(
    username: str, role: Annotated[str, typer.Argument(help="admin | viewer")]
) -> None:
    """Make an account an admin or a viewer (its open sessions follow at once). The last
    enabled admin cannot become a viewer (exit 1)."""
    with opened() as app:
        app.accounts.set_role(username, role, actor=CLI_ACTOR)
    typer.echo(f"'{username}' is now {role}.")


@admin_app.command("reset-password")
@handle_errors
def admin_reset_password(
    username: str,
    password_stdin: PasswordStdinOpt = False,
    password_env: PasswordEnvOpt = None,
) -> None:
    """Set a new password for an account; every session of it ends, its reset links die."""
    password = _password(password_stdin, password_env, prompt="New password")
    with opened() as app:
        app.accounts.set_password(username, password, actor=CLI_ACTOR)
    typer.echo(f"Password of '{username}' replaced; its sessions are signed out.")


def _password(stdin: bool, env: str | None, *, prompt: str) -> str:
    """An account's password from --password-stdin, --password-env or a hidden prompt."""
    password = read_secret(stdin=stdin, env=env, prompt=prompt, field="password")
    if not password:
        bad_input("password", "is required: use --password-stdin, --password-env or the prompt")
    return password


def _print_list(
    items: Sequence[T],
    as_json: bool,
    row: Callable[[T], list[str]],
    headers: list[str],
    *,
    empty: str,
) -> None:
    """``items`` as JSON, or as a table of one ``row`` each (``empty`` when there are none)."""
    if as_json:
        print_json(items)
        return
    typer.echo(table([row(i) for i in items], headers) if items else empty)


@apikey_app.command("create")
@handle_errors
def apikey_create(
    name: str,
    role: Annotated[str, typer.Option(help="admin | sender")] = "sender",
    process: Annotated[
        list[str] | None,
        typer.Option(
            "--process", metavar="P", help="Limit a sender key to this process (repeatable)."
        ),
    ] = None,
    profile: Annotated[
        list[str] | None,
        typer.Option(
            "--profile", metavar="NAME", help="Limit a sender key to this profile (repeatable)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; it is printed once and cannot be shown again.

    A sender key reads only the messages and actions it created; with --process and
    --profile it may also send only as those."""
    with opened() as app:
        created = app.accounts.create_api_key(
            name, role=role, processes=process or None, profiles=profile or None, actor=CLI_ACTOR
        )
    if as_json:
        print_json(created)
    else:
        typer.echo(created.key)
        typer.echo(
            f"API key '{name}' ({role}) created. Store it now: it is not shown again.", err=True
        )


@apikey_app.command("list")
@handle_errors
def apikey_list(as_json: JsonOpt = False) -> None:
    """List API keys (never the keys themselves)."""
    with opened() as app:
        keys = app.accounts.list_api_keys()
    _print_list(
        keys,
        as_json,
        lambda k: [
            k.name,
            k.role,
            k.prefix + "…",
            f"{k.created_at:%Y-%m-%d}",
            "revoked" if k.revoked_at else "active",
            _scope_text(k.processes, k.profiles),
        ],
        ["name", "role", "prefix", "created", "state", "limited to"],
        empty="No API keys.",
    )


def _scope_text(processes: list[str] | None, profiles: list[str] | None) -> str:
    parts = []
    if processes is not None:
        parts.append("processes " + ", ".join(processes))
    if profiles is not None:
        parts.append("profiles " + ", ".join(profiles))
    return "; ".join(parts) or "-"


@apikey_app.command("revoke")
@handle_errors
def apikey_revoke(name: str) -> None:
    """Revoke an API key at once."""
    with opened() as app:
        app.accounts.revoke_api_key(name, actor=CLI_ACTOR)
    typer.echo(f"Revoked API key '{name}'.")


@cli.command()
@handle_errors
def doctor(as_json: JsonOpt = False) -> None:
    """Check the installation: network profile, connection tests, database, files, keys.

    Read-only; prints no secret. Exit code 1 when a check failed, else 0.
    """
    from postroom.doctor import run_checks, summary
    from postroom.settings import get_settings

    checks = run_checks(get_settings())
    worst = summary(checks)
    if as_json:
        print_json({"status": worst, "checks": [c.as_dict() for c in checks]})
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            typer.echo(f"[{c.status:<4}] {c.name:<{width}}  {c.value}")
            if c.advice:
                typer.echo(f"{'':<7} {'':<{width}}  → {c.advice}")
    if worst == "fail":
        raise typer.Exit(1)


def main() -> None:
    # Click reports usage errors with exit code 2 already; we keep that contract.
    sys.exit(cli(standalone_mode=True))
