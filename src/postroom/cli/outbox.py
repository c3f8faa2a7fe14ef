"""`postroom send`, `postroom worker`, `postroom outbox …`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from postroom.cli._common import (
    CLI_ACTOR,
    bad_input,
    group,
    handle_errors,
    opened,
    print_json,
    table,
)

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from postroom.outbox.schemas import OutboxRead
    from postroom.outbox.worker import Worker

outbox_app = group("See and control queued, sent and failed mail.")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
SearchOpt = Annotated[
    str | None,
    typer.Option(
        "--search",
        "-q",
        help="Recipient, subject or Message-ID contains this (any case), or an id.",
    ),
]
StatusOpt = Annotated[
    str | None, typer.Option(help="queued|sending|sent|retrying|failed|bounced|cancelled")
]
ProfileFilterOpt = Annotated[str | None, typer.Option(help="Only messages of this profile.")]
ProcessFilterOpt = Annotated[str | None, typer.Option(help="Only messages of this process.")]
# retry and cancel: one message by id, or every message the filter options match
MessageIdArg = Annotated[
    int | None, typer.Argument(help="A message id; or filter with the options.")
]


def _attachment(path: str) -> dict[str, Any]:
    import base64
    import mimetypes

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        bad_input("attach", f"cannot read {path}: {exc.strerror}")
    content_type = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
    if content_type.startswith(("message/", "multipart/")):  # never base64 (RFC 2046)
        content_type = "application/octet-stream"
    return {
        "filename": p.name,
        "content_type": content_type,
        "content": base64.b64encode(data).decode(),
    }


def _when(value: str | None, field: str) -> datetime | None:
    """A date (YYYY-MM-DD: that whole day, for --until too) or an ISO time with zone, as
    the web's filters take them."""
    if value is None:
        return None
    from postroom.timebounds import parse_when

    try:
        return parse_when(value, end=field == "until")
    except ValueError as exc:
        bad_input(field, f"{exc} (or a time with zone such as 2026-11-23T08:00Z)")


def _on_terminal() -> bool:
    # progress is for a person watching: a pipe, a file or a log gets only the result
    return sys.stdout.isatty()


async def _with_progress(worker: Worker, work: Coroutine[Any, Any, None], *, live: bool) -> None:
    """Run ``work``; on a terminal, keep one line up to date with what ``worker`` did."""
    import asyncio

    if not live:
        await work
        return

    def show() -> None:
        line = f"delivering: {worker.sent} sent, {worker.retried} to retry, {worker.failed} failed"
        sys.stdout.write(f"\r\x1b[K{line} …")
        sys.stdout.flush()

    async def tick() -> None:
        while True:
            show()
            await asyncio.sleep(0.5)

    ticker = asyncio.create_task(tick())
    try:
        await work
    finally:
        ticker.cancel()
        show()
        sys.stdout.write("\n")
        sys.stdout.flush()


@handle_errors
def send(
    to: Annotated[
        list[str], typer.Option("--to", metavar="ADDRESS", help="Recipient; repeat for several.")
    ],
    subject: Annotated[str, typer.Option("--subject", help="Subject line.")] = "",
    text: Annotated[
        str | None, typer.Option("--text", metavar="TEXT|-", help="Plain-text body ('-' = stdin).")
    ] = None,
    html: Annotated[
        str | None, typer.Option("--html", metavar="HTML|@FILE", help="HTML body, or @FILE.")
    ] = None,
    cc: Annotated[
        list[str] | None, typer.Option("--cc", metavar="ADDRESS", help="Copy to; repeat.")
    ] = None,
    bcc: Annotated[
        list[str] | None, typer.Option("--bcc", metavar="ADDRESS", help="Blind copy to; repeat.")
    ] = None,
    reply_to: Annotated[
        str | None, typer.Option("--reply-to", metavar="ADDRESS", help="Where replies go.")
    ] = None,
    attach: Annotated[
        list[str] | None, typer.Option("--attach", metavar="FILE", help="Attach a file; repeat.")
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", metavar="'NAME: VALUE'", help="Extra header; repeat."),
    ] = None,
    priority: Annotated[str, typer.Option(help="high | normal | low")] = "normal",
    profile: Annotated[
        str | None, typer.Option("--profile", metavar="NAME", help="Send through this profile.")
    ] = None,
    process: Annotated[
        str | None,
        typer.Option("--process", metavar="NAME", help="Send as this process (its bound profile)."),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="The same key queues the message once.")
    ] = None,
    send_at: Annotated[
        str | None,
        typer.Option("--send-at", metavar="TIME", help="Not before; ISO 8601 with zone."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it is sent or failed.")] = False,
    wait_timeout: Annotated[
        float, typer.Option("--wait-timeout", help="Give up waiting after this long.")
    ] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Queue a message; prints its id. With --wait, exits 1 unless it was sent."""
    from postroom.outbox.schemas import OutboxStatus

    if text == "-":
        text = sys.stdin.read()
    if html and html.startswith("@"):
        try:
            html = Path(html[1:]).read_text("utf-8")
        except OSError as exc:
            bad_input("html", f"cannot read {html[1:]}: {exc.strerror}")
    headers: dict[str, str] = {}
    for h in header or []:
        name, sep, value = h.partition(":")
        if not sep:
            bad_input("headers", f"'{h}' is not 'Name: value'")
        headers[name.strip()] = value.strip()
    message = {
        "to": to, "cc": cc or [], "bcc": bcc or [], "subject": subject, "text": text,
        "html": html, "reply_to": reply_to, "headers": headers, "priority": priority,
        "attachments": [_attachment(a) for a in attach or []],
    }  # fmt: skip
    with opened() as app:
        id = app.send(
            message, profile=profile, process=process, idempotency_key=idempotency_key,
            send_at=_when(send_at, "send_at"),
        )  # fmt: skip
        result: OutboxRead | None = None
        if wait:
            from postroom.aio import run as run_loop
            from postroom.outbox.worker import Worker

            w = Worker(app)
            run_loop(_with_progress(w, w.run(drain=True), live=not as_json and _on_terminal()))
            result = app.outbox.wait(id, timeout_s=wait_timeout)
    if as_json:
        print_json(result or {"id": id, "status": "queued"})
    elif result is None:
        typer.echo(f"Queued message {id}.")
    else:
        typer.echo(
            f"Message {id}: {result.status}"
            + (f" ({result.last_error})" if result.last_error else "")
        )
    if result is not None and result.status is not OutboxStatus.SENT:
        raise typer.Exit(1)


@handle_errors
def worker(
    drain: Annotated[bool, typer.Option("--drain", help="Exit when nothing is due.")] = False,
    batch: Annotated[int, typer.Option(help="Messages claimed at a time.")] = 500,
    lease: Annotated[
        float, typer.Option(help="Seconds a claim is held before others may take it.")
    ] = 60.0,
) -> None:
    """Deliver queued mail until stopped (SIGTERM/Ctrl+C finish what is in hand first)."""
    import asyncio
    import signal

    from postroom.aio import run as run_loop
    from postroom.outbox.worker import Worker

    if not 1 <= batch <= 10_000:
        bad_input("batch", "must be between 1 and 10000")
    if not 0.5 <= lease <= 3600:
        bad_input("lease", "must be between 0.5 and 3600 seconds")
    with opened(wait_for_database_s=120) as app:
        w = Worker(app, batch=batch, lease_s=lease)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, w.stop)
            await _with_progress(w, w.run(drain=drain), live=_on_terminal())

        typer.echo(f"postroom worker {w.name} started", err=True)
        run_loop(main())
        typer.echo(
            f"worker {w.name} stopped: {w.sent} sent, {w.retried} to retry, {w.failed} failed",
            err=True,
        )


def _recipients(addresses: list[str], width: int = 40) -> str:
    """Whole addresses that fit in ``width``, then "+N more": never half an address."""
    shown: list[str] = []
    for address in addresses:
        if shown and len(", ".join([*shown, address])) > width:
            break
        shown.append(address)
    rest = len(addresses) - len(shown)
    return ", ".join(shown) + (f" +{rest} more" if rest else "")


def _cut(text: str, width: int = 40) -> str:
    """``text`` on one line, cut at a word with "…" when longer than ``width``."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    head = text[: width - 1]
    if " " in head:
        head = head.rsplit(" ", 1)[0]
    return head + "…"


@outbox_app.command("list")
@handle_errors
def list_messages(
    status: StatusOpt = None,
    profile: ProfileFilterOpt = None,
    process: ProcessFilterOpt = None,
    since: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD or an ISO 8601 time with zone.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD (that day included) or a time with zone.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    search: SearchOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List messages, newest first."""
    filters = _filters(status, profile, process, since, until, search)
    with opened() as app:
        items = app.outbox.list(**filters, limit=limit)
    if as_json:
        print_json(items)
        return
    if not items:
        typer.echo("No messages.")
        return
    rows = [
        [str(m.id), m.status.value, m.profile, f"{m.created_at:%Y-%m-%d %H:%M:%S}", str(m.attempts),
         _recipients(m.recipients), _cut(m.subject)]
        for m in items
    ]  # fmt: skip
    typer.echo(table(rows, ["id", "status", "profile", "created (UTC)", "tries", "to", "subject"]))


@outbox_app.command("show")
@handle_errors
def show(id: int, as_json: JsonOpt = False) -> None:
    """One message with every attempt and the server's replies."""
    with opened() as app:
        m = app.outbox.get(id)
    if as_json:
        print_json(m)
        return
    typer.echo(f"Message {m.id}: {m.status.value}")
    typer.echo(f"  profile:    {m.profile}" + (f" (process {m.process})" if m.process else ""))
    typer.echo(f"  subject:    {m.subject}")
    typer.echo(f"  to:         {', '.join(m.recipients)}")
    typer.echo(f"  message-id: {m.message_id}")
    typer.echo(
        f"  created:    {m.created_at:%Y-%m-%d %H:%M:%S} UTC; due {m.due_at:%Y-%m-%d %H:%M:%S}"
    )
    if m.last_error:
        typer.echo(f"  last error: {m.last_error}")
    for a in m.history:
        typer.echo(f"  attempt {a.at:%H:%M:%S} {a.worker}: {a.outcome} {a.code or ''} {a.text}")


def _filters(
    status: str | None,
    profile: str | None,
    process: str | None,
    since: str | None,
    until: str | None,
    search: str | None,
) -> dict[str, Any]:
    """The filters as the service takes them; every bad one reported at once (exit 2)."""
    from postroom.errors import FieldError, ValidationError
    from postroom.outbox.schemas import OutboxStatus
    from postroom.outbox.search import search_term

    problems: list[FieldError] = []
    if status is not None and status not in OutboxStatus.__members__.values():
        problems.append(FieldError("status", f"must be one of {', '.join(OutboxStatus)}"))
    times: dict[str, datetime | None] = {}
    for field, value in (("since", since), ("until", until)):
        try:
            times[field] = _parse_when(value, end=field == "until")
        except ValueError as exc:
            problems.append(FieldError(field, str(exc)))
    try:
        search_term(search, field="search")
    except ValidationError as exc:
        problems.extend(exc.errors)
    if problems:
        raise ValidationError(problems)
    return {"status": status, "profile": profile, "process": process, "search": search, **times}


def _parse_when(value: str | None, *, end: bool = False) -> datetime | None:
    """A time from --since/--until as the web's filters take it: a date (that whole day,
    so --until includes it) or an ISO 8601 time with zone."""
    if value is None:
        return None
    from postroom.timebounds import parse_when

    try:
        return parse_when(value, end=end)
    except ValueError as exc:
        raise ValueError(f"{exc} (or a time with zone such as 2026-11-23T08:00Z)") from None


def _act(
    action: str,
    id: int | None,
    filters: dict[str, Any],
    yes: bool,
) -> None:
    """One message by id, or every message the filters match after a confirmation."""
    given = {k: v for k, v in filters.items() if v not in (None, "")}
    if id is not None:
        if given:
            bad_input("id", "give a message id or filters, not both")
        with opened() as app:
            m = app.outbox.retry(id) if action == "retry" else app.outbox.cancel(id)
        typer.echo(f"Message {m.id} is {'queued again' if action == 'retry' else 'cancelled'}.")
        return
    if not given:
        bad_input(
            "id",
            f"give a message id, or filters (--status, --profile, --process, --since, "
            f"--until, --search) to {action} every matching message",
        )
    with opened() as app:
        count = app.outbox.bulk_count(action, **filters)
        verb = action
        done_word = "retried" if action == "retry" else "cancelled"
        if count == 0:
            typer.echo(f"No matching message can be {done_word}.")
            return
        if not yes and not typer.confirm(f"{verb.capitalize()} {count} message(s)?"):
            typer.echo(f"Nothing changed (add --yes to {verb} without asking).", err=True)
            raise typer.Exit(1)
        done = app.outbox.bulk(action, actor=CLI_ACTOR, **filters)
    typer.echo(f"{done} message(s) {'queued again' if action == 'retry' else 'cancelled'}.")


SinceOpt = Annotated[
    str | None,
    typer.Option("--since", help="Created at or after: a UTC date or an ISO 8601 time with zone."),
]
UntilOpt = Annotated[
    str | None,
    typer.Option("--until", help="Created before: a UTC date or an ISO 8601 time with zone."),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Act without asking for confirmation.")]


@outbox_app.command("retry")
@handle_errors
def retry(
    id: MessageIdArg = None,
    status: StatusOpt = None,
    profile: ProfileFilterOpt = None,
    process: ProcessFilterOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    search: SearchOpt = None,
    yes: YesOpt = False,
) -> None:
    """Send a failed, bounced or cancelled message again now; with filters instead of an id,
    every matching one (shows the count and asks first, unless --yes)."""
    _act("retry", id, _filters(status, profile, process, since, until, search), yes)


@outbox_app.command("cancel")
@handle_errors
def cancel(
    id: MessageIdArg = None,
    status: StatusOpt = None,
    profile: ProfileFilterOpt = None,
    process: ProcessFilterOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    search: SearchOpt = None,
    yes: YesOpt = False,
) -> None:
    """Cancel a message that has not been sent yet; with filters instead of an id, every
    matching queued or retrying one (shows the count and asks first, unless --yes)."""
    _act("cancel", id, _filters(status, profile, process, since, until, search), yes)


@outbox_app.command("purge")
@handle_errors
def purge(
    older_than: Annotated[
        int | None,
        typer.Option(
            "--older-than",
            help="Days; default POSTROOM_OUTBOX_RETENTION_DAYS (30). Workers also do this hourly.",
        ),
    ] = None,
) -> None:
    """Delete sent, failed, bounced and cancelled messages queued more than N days ago."""
    with opened() as app:
        days = app.settings.outbox_retention_days if older_than is None else older_than
        if days < 1 or days > 3650:
            bad_input("older-than", "must be between 1 and 3650 days")
        before = datetime.now(UTC) - timedelta(days=days)
        count = app.outbox.queue.purge(before=before)
    typer.echo(
        f"Deleted {count} finished message(s) queued before {before:%Y-%m-%d %H:%M} UTC "
        "(with their bodies and attempts). Queued and retrying mail is kept."
    )
