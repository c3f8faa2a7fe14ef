"""`postroom events send|list|digests|run-digests` and `postroom subscription add|list|show|remove`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from postroom.cli._common import (
    CLI_ACTOR,
    bad_input,
    group,
    handle_errors,
    opened,
    print_json,
    read_document,
    table,
)

if TYPE_CHECKING:
    from postroom.app import Postroom
    from postroom.notify.events import Notifier
    from postroom.notify.schemas import SubscriptionRead

__all__ = ["events_app", "subscription_app"]

events_app = group("Notify subscribers of events; see what was sent.")
subscription_app = group("Who gets which event notifications, at once or as summaries.")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _notifier(app: Postroom) -> Notifier:
    from postroom.notify.events import Notifier

    return Notifier(app.sessions, app.outbox, app.templates, public_url=app.settings.public_url)


def _pairs(items: list[str] | None, field: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            bad_input(field, f"'{item}' is not key=value")
        found[key.strip()] = value.strip()
    return found


# -- events ---------------------------------------------------------------------------------


@events_app.command("send")
@handle_errors
def send(
    event: str,
    process: Annotated[str | None, typer.Option(help="The process the event is about.")] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="JSON/YAML data file ('-' = stdin).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="key=value (YAML value); repeat.")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="The same key notifies once.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Notify the subscribers of EVENT; exits 1 when a delivery failed."""
    import yaml

    from postroom.notify.schemas import DeliveryStatus

    values: dict[str, Any] = read_document(data) if data else {}
    for key, raw in _pairs(set_, "set").items():
        values[key] = yaml.safe_load(raw) if raw else ""
    with opened() as app:
        result = _notifier(app).notify(
            event, process=process, data=values, idempotency_key=idempotency_key
        )
    if as_json:
        print_json(result)
    elif not result.deliveries:
        typer.echo(f"Event {result.event_id} ({event}) reached no subscription.")
    else:
        typer.echo(f"Event {result.event_id} ({event}):")
        for d in result.deliveries:
            extra = f" as message {d.outbox_id}" if d.outbox_id else ""
            typer.echo(
                f"  {d.address}: {d.status.value}{extra}" + (f" ({d.error})" if d.error else "")
            )
    if any(d.status is DeliveryStatus.FAILED for d in result.deliveries):
        raise typer.Exit(1)


@events_app.command("list")
@handle_errors
def list_events(
    event: Annotated[str | None, typer.Option(help="Only this event.")] = None,
    process: Annotated[str | None, typer.Option(help="Only events about this process.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Recent events, newest first, with what each did."""
    with opened() as app:
        found = _notifier(app).events(limit=limit, event=event, process=process)
    if as_json:
        print_json(found)
        return
    rows = [
        [str(e.event_id), f"{e.created_at:%Y-%m-%d %H:%M:%S}", e.event, e.process or "-",
         ", ".join(f"{d.address} {d.status.value}" for d in e.deliveries)[:60] or "-"]
        for e in found
    ]  # fmt: skip
    typer.echo(
        table(rows, ["id", "at (UTC)", "event", "process", "deliveries"]) if rows else "No events."
    )


@events_app.command("digests")
@handle_errors
def digests(
    subscription: Annotated[int | None, typer.Option(help="Only this subscription.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Summaries made so far, newest first."""
    with opened() as app:
        found = _notifier(app).digests.list(subscription_id=subscription, limit=limit)
    if as_json:
        print_json(found)
        return
    rows = [
        [str(d.id), str(d.subscription_id), f"{d.period_start:%Y-%m-%d %H:%M}",
         f"{d.period_end:%Y-%m-%d %H:%M}", d.status.value, str(d.events),
         str(d.outbox_id or "-"), (d.error or "")[:40]]
        for d in found
    ]  # fmt: skip
    headers = [
        "id",
        "subscription",
        "from (UTC)",
        "to (UTC)",
        "status",
        "events",
        "message",
        "error",
    ]
    typer.echo(table(rows, headers) if rows else "No summaries yet.")


@events_app.command("run-digests")
@handle_errors
def run_digests(as_json: JsonOpt = False) -> None:
    """Send the summaries that are due now (workers do this by themselves)."""
    with opened() as app:
        made = _notifier(app).run_due_digests()
    if as_json:
        print_json(made)
        return
    typer.echo(f"{len(made)} summary(ies) made." if made else "No summary was due.")
    for d in made:
        typer.echo(f"  subscription {d.subscription_id}: {d.status.value}, {d.events} event(s)")


# -- subscriptions --------------------------------------------------------------------------


def _mode(s: SubscriptionRead) -> str:
    if not s.schedule:
        return "immediate"
    return f"summary '{s.schedule}' {s.timezone}" + (" (even empty)" if s.send_empty else "")


@subscription_app.command("add")
@handle_errors
def add(
    event: Annotated[str, typer.Option("--event", help="Event name or glob, e.g. run.*")],
    to: Annotated[str, typer.Option("--to", help="The recipient.")],
    process: Annotated[
        str | None, typer.Option(help="Process name or glob (default: any).")
    ] = None,
    template: Annotated[
        str | None, typer.Option(help="Template (default: by event, or the summary).")
    ] = None,
    filter_: Annotated[
        list[str] | None,
        typer.Option("--filter", help="field=value1,value2: only events whose data match."),
    ] = None,
    schedule: Annotated[
        str | None, typer.Option(help="Cron expression: a summary instead of one mail each.")
    ] = None,
    timezone: Annotated[str, typer.Option(help="IANA zone of the schedule.")] = "UTC",
    send_empty: Annotated[
        bool, typer.Option("--send-empty", help="Send a summary for empty periods too.")
    ] = False,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it switched off.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Subscribe an address to events."""
    rules = {
        k: [v.strip() for v in vals.split(",") if v.strip()]
        for k, vals in _pairs(filter_, "filter").items()
    }
    spec = {
        "event": event, "process": process, "address": to, "template": template,
        "filter": rules or None, "schedule": schedule, "timezone": timezone,
        "send_empty": send_empty, "enabled": not disabled,
    }  # fmt: skip
    with opened() as app:
        created = _notifier(app).subscriptions.add(spec, actor=CLI_ACTOR)
    if as_json:
        print_json(created)
    else:
        typer.echo(
            f"Created subscription {created.id}: {created.address} gets {created.event} ({_mode(created)})."
        )


@subscription_app.command("list")
@handle_errors
def list_subscriptions(as_json: JsonOpt = False) -> None:
    """List subscriptions."""
    with opened() as app:
        found = _notifier(app).subscriptions.list()
    if as_json:
        print_json(found)
        return
    rows = [
        [str(s.id), s.event, s.process or "(any)", s.address, s.template, _mode(s),
         " ".join(f"{k}={','.join(map(str, v))}" for k, v in (s.filter or {}).items()) or "-",
         "yes" if s.enabled else "no"]
        for s in found
    ]  # fmt: skip
    headers = ["id", "event", "process", "to", "template", "mode", "filter", "enabled"]
    typer.echo(table(rows, headers) if rows else "No subscriptions.")


@subscription_app.command("show")
@handle_errors
def show(id: int, as_json: JsonOpt = False) -> None:
    """One subscription."""
    with opened() as app:
        found = _notifier(app).subscriptions.get(id)
    if as_json:
        print_json(found)
        return
    for key, value in found.model_dump(mode="json").items():
        typer.echo(f"{key + ':':16}{value}")


@subscription_app.command("remove")
@handle_errors
def remove(id: int) -> None:
    """Remove a subscription."""
    with opened() as app:
        removed = _notifier(app).subscriptions.remove(id, actor=CLI_ACTOR)
    typer.echo(f"Removed subscription {id} ({removed.address}, {removed.event}).")
