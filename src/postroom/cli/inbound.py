"""`postroom inbound …`: run the IMAP sync, see its health, manage webhook subscriptions,
delete old messages."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from postroom.cli._common import (
    bad_input,
    group,
    handle_errors,
    opened,
    print_json,
    read_secret,
    table,
)

if TYPE_CHECKING:
    from postroom.app import Postroom
    from postroom.inbound.service import Inbound

__all__ = ["inbound_app"]

inbound_app = group("Receive mail over IMAP: run the sync, check its health, manage webhooks.")
webhook_app = group("Webhooks that receive every inbound message.")
inbound_app.add_typer(webhook_app, name="webhook")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def service(app: Postroom) -> Inbound:
    """The inbound service of ``app``: the one ``serve`` runs, with its subscribers."""
    return app.inbound


@inbound_app.command("run")
@handle_errors
def run(
    lease: Annotated[
        float, typer.Option(help="Seconds a mailbox stays leased to this process without renewal.")
    ] = 30.0,
    idle_renew: Annotated[
        float, typer.Option(help="Re-issue IDLE after this many seconds (keep under 29 min).")
    ] = 600.0,
    rescan: Annotated[
        float, typer.Option(help="Check for new or changed profiles this often.")
    ] = 30.0,
) -> None:
    """Sync every enabled receiving profile until stopped (SIGTERM/Ctrl+C).

    Run it on several machines for failover: each mailbox is synced by one process at a
    time (a lease in the database); the others take over when it stops renewing.
    """
    import asyncio
    import signal

    from postroom.aio import run as run_loop
    from postroom.inbound.schemas import InboundConfig

    if not 1 <= lease <= 3600:
        bad_input("lease", "must be between 1 and 3600 seconds")
    if not 1 <= idle_renew <= 1740:
        bad_input("idle_renew", "must be between 1 and 1740 seconds (29 minutes)")
    if not 0.1 <= rescan <= 3600:
        bad_input("rescan", "must be between 0.1 and 3600 seconds")
    config = InboundConfig(lease_s=lease, idle_renew_s=idle_renew, rescan_s=rescan)
    with opened(wait_for_database_s=120) as app:
        # the same wiring as `serve`: app.inbound carries the subscribers the application
        # registers (a reply deciding an actionable email), not a bare service of its own
        runner = service(app).runner(config=config)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, runner.stop)
            await runner.run()

        typer.echo(f"postroom inbound {runner.name} started", err=True)
        run_loop(main())
        typer.echo(f"postroom inbound {runner.name} stopped", err=True)


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


@inbound_app.command("status")
@handle_errors
def status(
    profile: Annotated[str | None, typer.Argument(help="One profile (default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Health of every receiving profile's listener; exits 1 when one is in error."""
    from postroom.db.tables import utcnow
    from postroom.inbound.schemas import ListenerState

    with opened() as app:
        rows = service(app).health(profile)
    now = utcnow()
    if as_json:
        print_json(rows)
    elif not rows:
        typer.echo("No profile receives mail (none has IMAP settings).")
    else:
        lines = [
            [
                h.profile,
                h.folder,
                h.state.value + (" (stale)" if h.stale else ""),
                _ago(h.last_poll_at, now),
                str(h.uidvalidity or "-"),
                str(h.last_uid),
                str(h.pending),
                str(h.quarantined),
                (h.last_error or "")[:60],
            ]
            for h in rows
        ]
        headers = ["profile", "folder", "state", "last poll", "uidvalidity", "last uid"]
        typer.echo(table(lines, [*headers, "pending", "quarantined", "last error"]))
    if any(h.state is ListenerState.ERROR and h.enabled for h in rows):
        raise typer.Exit(1)


@inbound_app.command("list")
@handle_errors
def list_messages(
    profile: Annotated[str | None, typer.Option(help="Only this profile's messages.")] = None,
    status: Annotated[
        str | None, typer.Option(help="received|delivered|processed|rejected|failed")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Received and quarantined (``--status rejected``) messages, newest first."""
    from postroom.inbound.schemas import InboundStatus

    if status is not None and status not in {s.value for s in InboundStatus}:
        bad_input("status", "must be one of " + ", ".join(s.value for s in InboundStatus))
    if not 1 <= limit <= 10_000:
        bad_input("limit", "must be between 1 and 10000")
    with opened() as app:
        rows = service(app).list(profile=profile, status=status, limit=limit)
    if as_json:
        print_json(rows)
        return
    lines = [
        [
            str(m.id),
            m.status.value,
            m.profile,
            f"{m.folder} {m.uid}",
            f"{m.received_at:%Y-%m-%d %H:%M:%S}",
            (m.from_address or "")[:30],
            (m.subject or m.reject_reason or "")[:50],
        ]
        for m in rows
    ]
    headers = [
        "id",
        "status",
        "profile",
        "folder uid",
        "received (UTC)",
        "from",
        "subject / reason",
    ]
    typer.echo(table(lines, headers) if lines else "No inbound messages.")


@webhook_app.command("add")
@handle_errors
def webhook_add(
    url: str,
    name: Annotated[str | None, typer.Option(help="Default: the URL's host.")] = None,
    profile: Annotated[str | None, typer.Option(help="Only this profile's mail.")] = None,
    secret_stdin: Annotated[
        bool, typer.Option("--secret-stdin", help="Read the signing secret from stdin.")
    ] = False,
    secret_env: Annotated[
        str | None,
        typer.Option(
            "--secret-env", metavar="VAR", help="Read the signing secret from this variable."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Subscribe URL; prints the signing secret once (generated unless given)."""
    secret = read_secret(stdin=secret_stdin, env=secret_env, prompt=None, field="secret")
    with opened() as app:
        created = service(app).webhooks.add(url, name=name, profile=profile, secret=secret)
    if as_json:
        print_json(created)
        return
    typer.echo(
        f"Webhook '{created.name}' (id {created.id}) receives mail of "
        f"{created.profile or 'every profile'} at {created.url}."
    )
    if secret is None:
        typer.echo(f"Signing secret (shown once): {created.secret}")


@webhook_app.command("list")
@handle_errors
def webhook_list(as_json: JsonOpt = False) -> None:
    """Webhook subscriptions (never their secrets)."""
    with opened() as app:
        hooks = service(app).webhooks.list()
    if as_json:
        print_json(hooks)
        return
    lines = [[str(h.id), h.name, h.profile or "(all)", h.url] for h in hooks]
    typer.echo(table(lines, ["id", "name", "profile", "url"]) if lines else "No webhooks.")


@webhook_app.command("remove")
@handle_errors
def webhook_remove(name: Annotated[str, typer.Argument(help="Name or id.")]) -> None:
    """Remove a webhook subscription."""
    with opened() as app:
        service(app).webhooks.remove(name)
    typer.echo(f"Removed webhook '{name}'.")


@inbound_app.command("purge")
@handle_errors
def purge(
    older_than: Annotated[
        int | None,
        typer.Option(
            "--older-than",
            help="Days; default POSTROOM_INBOUND_RETENTION_DAYS (30). "
            "serve and inbound run also do this hourly.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be deleted.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete received messages (with their attachments) older than N days whose
    subscribers all succeeded, and quarantined ones; pending and failed ones are kept."""
    from postroom.db.tables import utcnow

    with opened() as app:
        days = app.settings.inbound_retention_days if older_than is None else older_than
        if days < 1 or days > 3650:
            bad_input("older-than", "must be between 1 and 3650 days")
        before = utcnow() - timedelta(days=days)
        retention = service(app).retention
        expected = retention.count(before=before)
        if dry_run:
            count = expected
        else:
            # progress only for a person watching: a pipe or a log gets the final line alone
            live = sys.stderr.isatty() and not as_json and expected > 0

            def progress(done: int) -> None:
                typer.echo(f"\rdeleted {done} of about {expected} …", nl=False, err=True)

            count = retention.purge(before=before, progress=progress if live else None)
            if live:
                typer.echo("", err=True)
    if as_json:
        print_json(
            {"deleted": 0 if dry_run else count, "would_delete": count if dry_run else None,
             "dry_run": dry_run, "older_than_days": days, "before": before.isoformat()}
        )  # fmt: skip
        return
    verb = "Would delete" if dry_run else "Deleted"
    typer.echo(
        f"{verb} {count} received message(s) from before {before:%Y-%m-%d %H:%M} UTC "
        "(with their attachments). Messages waiting for subscribers, or whose subscribers "
        "failed, are kept."
    )
