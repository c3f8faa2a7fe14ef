"""The outbox: what was sent, what is waiting, what failed and why; retry or cancel one message.

The list is a GET form (search, status, profile, process, since, until) with pages of
``limit`` messages and an "Older" link; the message page shows every attempt with the
server's reply. A filtered set can be retried or cancelled at once after a confirmation
page naming the count; the counts by status refresh themselves (``/counts``, JSON).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.responses import JSONResponse

from postroom.app import Postroom
from postroom.errors import Conflict, NotFound, ValidationError
from postroom.outbox.schemas import OutboxStatus, OutboxSummary
from postroom.outbox.search import search_term
from postroom.web.core import EditorForm, PageNotFound, UserDep, WebDep, see_other
from postroom.web.listing import LIMITS, parse_limit, parse_when, query_string, shorten
from postroom.web.views.common import Route

__all__ = ["CANCELLABLE", "RETRYABLE", "ROUTES", "older_page"]

LIST = "/settings/email/outbox"
RETRYABLE = frozenset(
    {OutboxStatus.FAILED, OutboxStatus.CANCELLED, OutboxStatus.BOUNCED, OutboxStatus.RETRYING}
)
CANCELLABLE = frozenset({OutboxStatus.QUEUED, OutboxStatus.RETRYING})
_MAX_FETCH = 10_000  # the most the service returns at once


@dataclass(frozen=True)
class Filters:
    """The filter form as typed (shown again as it was, and carried by the paging links)."""

    status: str = ""
    profile: str = ""
    process: str = ""
    since: str = ""
    until: str = ""
    limit: str = ""
    q: str = ""

    def query(self, **changes: str | int | None) -> str:
        return query_string(asdict(self), **changes)

    @property
    def active(self) -> bool:
        return any((self.status, self.profile, self.process, self.since, self.until, self.q))

    @property
    def hidden(self) -> list[tuple[str, str]]:
        """The set filters as (name, value), carried by the bulk confirmation form."""
        return [(k, v) for k, v in asdict(self).items() if v and k != "limit"]


def _service_filters(f: Filters) -> tuple[dict[str, Any], dict[str, str]]:
    """Keyword arguments for ``outbox.list`` and, per field, what is wrong with it."""
    kwargs: dict[str, Any] = {}
    errors: dict[str, str] = {}
    if f.status:
        if f.status in {s.value for s in OutboxStatus}:
            kwargs["status"] = f.status
        else:
            errors["status"] = "choose one of the statuses"
    for name in ("profile", "process"):
        value = getattr(f, name).strip()
        if value:
            kwargs[name] = value
    for name, end in (("since", False), ("until", True)):
        raw = getattr(f, name)
        if raw.strip():
            try:
                kwargs[name] = parse_when(raw, end=end)
            except ValueError as exc:
                errors[name] = str(exc)
    if "since" in kwargs and "until" in kwargs and kwargs["until"] <= kwargs["since"]:
        errors["until"] = "must not be before the start date"
    try:
        term = search_term(f.q)
    except ValidationError as exc:
        errors["q"] = exc.errors[0].message
    else:
        if term is not None:
            kwargs["search"] = term
    return kwargs, errors


def older_page(
    pr: Postroom, filters: dict[str, Any], *, limit: int, before: int | None
) -> tuple[list[OutboxSummary], bool]:
    """``limit`` messages (newest first) older than message ``before``, and whether more exist.

    The service narrows by creation time only, so this asks up to the anchor's creation
    time and drops the anchor and newer ids (messages stored in the same instant share a
    time; ids order them). Raises NotFound when ``before`` does not exist.
    """
    if before is None:
        rows = pr.outbox.list(**filters, limit=limit + 1)
        return rows[:limit], len(rows) > limit
    until = pr.outbox.get(before).created_at + timedelta(microseconds=1)
    if filters.get("until") is not None:
        until = min(until, filters["until"])
    fetch = limit + 51
    while True:
        rows = pr.outbox.list(**{**filters, "until": until}, limit=fetch)
        older = [r for r in rows if r.id < before]
        if len(older) > limit or len(rows) < fetch or fetch >= _MAX_FETCH:
            return older[:limit], len(older) > limit
        fetch = min(fetch * 4, _MAX_FETCH)


def _id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise PageNotFound("There is no such message in the outbox.")
    return int(raw)


def outbox_page(
    request: Request,
    web: WebDep,
    user: UserDep,
    status: Annotated[str, Query()] = "",
    profile: Annotated[str, Query()] = "",
    process: Annotated[str, Query()] = "",
    since: Annotated[str, Query()] = "",
    until: Annotated[str, Query()] = "",
    limit: Annotated[str, Query()] = "",
    before: Annotated[str, Query()] = "",
    q: Annotated[str, Query()] = "",
) -> Response:
    """Messages newest first, filtered; ``before`` pages to older ones."""
    filters = Filters(status, profile, process, since, until, limit, q)
    kwargs, errors = _service_filters(filters)
    size = parse_limit(limit)
    anchor = int(before) if before.isdigit() and len(before) <= 18 else None
    messages: list[OutboxSummary] = []
    more = False
    if not errors:
        try:
            messages, more = older_page(web.pr, kwargs, limit=size, before=anchor)
        except NotFound:
            raise PageNotFound(
                "The message this page started from no longer exists; start from the newest."
            ) from None
    older = filters.query(before=messages[-1].id) if more and messages else None
    return web.page(
        request,
        "outbox_list.html",
        status=422 if errors else 200,
        title="Outbox",
        messages=[(m, shorten(m.last_error, 70)) for m in messages],
        filters=filters,
        errors=errors,
        statuses=list(OutboxStatus),
        counts=web.pr.outbox.queue.counts(),
        profiles=[p.name for p in web.pr.profiles.list()],
        limits=LIMITS,
        limit=size,
        paged=anchor is not None,
        newest=filters.query(),
        older=older,
        can_edit=user.can_edit,
        bulk_retry=filters.query(action="retry", limit=None),
        bulk_cancel=filters.query(action="cancel", limit=None),
    )


def counts_json(web: WebDep, user: UserDep) -> Response:
    """The counts by status, for the list page to refresh without a reload."""
    counts = web.pr.outbox.queue.counts()
    body = {"all": sum(counts.values()), **{s.value: counts.get(s.value, 0) for s in OutboxStatus}}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


_VERBS = {
    "retry": ("Retry", "retried", "queued again"),
    "cancel": ("Cancel", "cancelled", "cancelled"),
}


def _bulk_filters(values: dict[str, str]) -> tuple[str, Filters, dict[str, Any], dict[str, str]]:
    action = values.get("action", "")
    filters = Filters(
        status=values.get("status", ""), profile=values.get("profile", ""),
        process=values.get("process", ""), since=values.get("since", ""),
        until=values.get("until", ""), q=values.get("q", ""),
    )  # fmt: skip
    kwargs, errors = _service_filters(filters)
    if action not in _VERBS:
        raise PageNotFound("Choose Retry or Cancel from the outbox list.")
    if not filters.active:
        errors["filters"] = "choose at least one filter first"
    return action, filters, kwargs, errors


def bulk_page(
    request: Request,
    web: WebDep,
    user: UserDep,
    action: Annotated[str, Query()] = "",
    status: Annotated[str, Query()] = "",
    profile: Annotated[str, Query()] = "",
    process: Annotated[str, Query()] = "",
    since: Annotated[str, Query()] = "",
    until: Annotated[str, Query()] = "",
    q: Annotated[str, Query()] = "",
) -> Response:
    """The confirmation step: how many messages the filters match that the action applies to."""
    values = {"action": action, "status": status, "profile": profile, "process": process,
              "since": since, "until": until, "q": q}  # fmt: skip
    action, filters, kwargs, errors = _bulk_filters(values)
    count = 0
    if not errors:
        try:
            count = web.pr.outbox.bulk_count(action, **kwargs)
        except ValidationError as exc:
            errors.update({e.field: e.message for e in exc.errors})
    verb, done, _ = _VERBS[action]
    return web.page(
        request,
        "outbox_bulk.html",
        status=422 if errors else 200,
        title=f"{verb} messages",
        action=action,
        verb=verb,
        done=done,
        count=count,
        filters=filters,
        errors=errors,
        can_edit=user.can_edit,
        back=filters.query(),
    )


def bulk(request: Request, web: WebDep, user: UserDep, form: EditorForm) -> Response:
    """Retry or cancel every matching message; one audit entry with the filters and count."""
    action, filters, kwargs, errors = _bulk_filters(form)
    back = f"{LIST}{filters.query()}"
    if errors:
        web.flash(request, "error", "; ".join(f"{k}: {v}" for k, v in errors.items()))
        return see_other(back)
    try:
        count = web.pr.outbox.bulk(action, actor=user.actor, **kwargs)
    except ValidationError as exc:
        web.flash(request, "error", "; ".join(f"{e.field}: {e.message}" for e in exc.errors))
        return see_other(back)
    _, done, result = _VERBS[action]
    if count:
        web.flash(request, "success", f"{count} message(s) {result}.")
    else:
        web.flash(request, "error", f"No matching message could be {done} any more.")
    return see_other(back)


def message_page(request: Request, web: WebDep, user: UserDep, message_id: str) -> Response:
    """One message with all its fields and every delivery attempt."""
    try:
        message = web.pr.outbox.get(_id(message_id))
    except NotFound:
        raise PageNotFound("There is no such message in the outbox.") from None
    profile_ids = {p.name: p.id for p in web.pr.profiles.list()}
    return web.page(
        request,
        "outbox_message.html",
        title=f"Message #{message.id}",
        m=message,
        profile_id=profile_ids.get(message.profile),
        can_edit=user.can_edit,
        can_retry=message.status in RETRYABLE,
        can_cancel=message.status in CANCELLABLE,
        overdue=message.due_at <= datetime.now(UTC),
    )


def retry(
    request: Request, web: WebDep, user: UserDep, message_id: str, form: EditorForm
) -> Response:
    """Send a failed, cancelled, bounced or retrying message again now."""
    id = _id(message_id)
    try:
        web.pr.outbox.retry(id)
    except Conflict as exc:
        web.flash(request, "error", exc.message)
    else:
        web.flash(request, "success", f"Message {id} is queued again; a worker sends it shortly.")
    return see_other(f"{LIST}/{id}")


def cancel(
    request: Request, web: WebDep, user: UserDep, message_id: str, form: EditorForm
) -> Response:
    """Stop a queued or retrying message (Retry sends it after all)."""
    id = _id(message_id)
    try:
        web.pr.outbox.cancel(id)
    except Conflict as exc:
        web.flash(request, "error", exc.message)
    else:
        web.flash(request, "success", f"Message {id} is cancelled: it will not be sent.")
    return see_other(f"{LIST}/{id}")


ROUTES = [
    Route(LIST, outbox_page),
    Route(LIST + "/counts", counts_json),
    Route(LIST + "/bulk", bulk_page),
    Route(LIST + "/bulk", bulk, ["POST"]),
    Route(LIST + "/{message_id}", message_page),
    Route(LIST + "/{message_id}/retry", retry, ["POST"]),
    Route(LIST + "/{message_id}/cancel", cancel, ["POST"]),
]
