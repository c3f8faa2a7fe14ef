"""Process bindings: which profile each process uses, and why."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response

from postroom.errors import NotFound, ValidationError
from postroom.profiles.bindings import Explanation
from postroom.web.core import EditorForm, UserDep, WebDep, see_other
from postroom.web.views.common import Route

__all__ = ["ROUTES"]

PAGE = "/settings/email/processes"


def _page(
    request: Request,
    web: WebDep,
    can_edit: bool,
    *,
    process: str = "",
    explanation: Explanation | None = None,
    errors: dict[str, str] | None = None,
    bind_process: str = "",
    bind_profile: str = "",
    status: int = 200,
) -> Response:
    return web.page(
        request,
        "processes.html",
        status=status,
        title="Process bindings",
        bindings=web.pr.bindings.list(),
        profiles=web.pr.profiles.list(),
        default=web.pr.get_default(),
        process=process,
        explanation=explanation,
        errors=errors or {},
        bind_process=bind_process,
        bind_profile=bind_profile,
        can_edit=can_edit,
    )


def processes_page(
    request: Request, web: WebDep, user: UserDep, process: Annotated[str, Query()] = ""
) -> Response:
    """The bindings, and the explainer for ``?process=``."""
    explanation = None
    errors: dict[str, str] = {}
    if process.strip():
        try:
            explanation = web.pr.explain(process)
        except ValidationError as exc:
            errors["explain"] = exc.errors[0].message
    return _page(
        request,
        web,
        user.can_edit,
        process=process,
        explanation=explanation,
        errors=errors,
        status=422 if errors else 200,
    )


def bind(request: Request, web: WebDep, user: UserDep, form: EditorForm) -> Response:
    """Bind a process to a profile (replacing its earlier binding)."""
    process = form.get("process", "")
    profile = form.get("profile", "")
    try:
        binding = web.pr.bind(process, profile, actor=user.actor)
    except ValidationError as exc:
        errors = {"bind_" + e.field: e.message for e in exc.errors}
        if "bind_profile" in errors:
            errors["bind_profile"] = "choose one of the profiles"
        return _page(
            request,
            web,
            user.can_edit,
            errors=errors,
            bind_process=process,
            bind_profile=profile,
            status=422,
        )
    except NotFound:
        errors = {"bind_profile": "choose one of the profiles"}
        return _page(request, web, user.can_edit, errors=errors, bind_process=process, status=422)
    web.flash(
        request, "success", f"Process '{binding.process}' now uses profile '{binding.profile}'."
    )
    return see_other(PAGE)


def unbind(request: Request, web: WebDep, user: UserDep, form: EditorForm) -> Response:
    """Remove a process's binding: it falls back to the system default."""
    process = form.get("process", "")
    try:
        web.pr.unbind(process, actor=user.actor)
    except (NotFound, ValidationError):
        web.flash(request, "error", f"Process '{process[:200]}' has no binding.")
    else:
        web.flash(
            request,
            "success",
            f"Process '{process}' is unbound; it now uses the system default profile.",
        )
    return see_other(PAGE)


ROUTES = [
    Route(PAGE, processes_page),
    Route(PAGE + "/bind", bind, ["POST"]),
    Route(PAGE + "/unbind", unbind, ["POST"]),
]
