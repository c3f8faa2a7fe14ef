"""Mail templates: the list, an editor with a preview of the unsaved values, the history,
and delete (or, for an override, revert to the built-in).

The preview shows the rendered HTML in ``<iframe srcdoc sandbox>``: no scripts, no
same-origin access, no navigation of this page. Those pages allow inline styles (mail
HTML carries ``style=""`` everywhere, and a srcdoc frame inherits this page's policy);
scripts stay limited to this server's own file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Query, Request, Response

from postroom.errors import Conflict, NotFound, StaleVersion, ValidationError
from postroom.notify.render import Rendered, TemplateError
from postroom.notify.schemas import TemplateOrigin, TemplateRead, TemplateSpec
from postroom.validation import validate_model
from postroom.web.core import EditorForm, PageNotFound, UserDep, WebDep, WebUser, see_other
from postroom.web.template_form import (
    TEMPLATE_FIELDS,
    Problem,
    field_errors,
    problem_from,
    template_data,
    template_values,
)
from postroom.web.views.common import Route

__all__ = ["LIST", "ROUTES"]

LIST = "/settings/email/templates"
NEW = LIST + "/-/new"  # "-" cannot start a template name, so no template hides this page
FETCH_HEADER = "postroom-fetch"
PREVIEW_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
_BLANK = {
    "subject": "",
    "html": '{% extends "_layout.html" %}\n{% block content %}\n<p>Hello,</p>\n{% endblock %}\n',
    "sample_data": "{}",
}


@dataclass
class Preview:
    """The outcome of rendering the form's values on its sample data."""

    rendered: Rendered | None = None
    problem: Problem | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)
    generated_text: bool = False  # the form has no text part: it was made from the HTML


@dataclass
class Editor:
    """Everything the editor page shows besides the template itself."""

    values: dict[str, str]
    errors: dict[str, list[str]] = field(default_factory=dict)
    preview: Preview | None = None
    notice: str | None = None
    stale: str | None = None
    refused: str | None = None  # why a save did not happen, when no field is at fault


def _find(web: WebDep, name: str) -> TemplateRead:
    try:
        return web.pr.templates.get(name)
    except NotFound:
        raise PageNotFound(
            f"There is no template named '{name}'; it may have been deleted."
        ) from None


def _form_values(form: dict[str, str]) -> dict[str, str]:
    return {k: form.get(k, "").replace("\r\n", "\n") for k in TEMPLATE_FIELDS}


def _preview(web: WebDep, name: str, values: dict[str, str]) -> Preview:
    try:
        data = template_data(values, with_name=False)
        rendered = web.pr.templates.preview(spec={**data, "name": name})
    except TemplateError as exc:
        return Preview(problem=problem_from(exc, values))
    except ValidationError as exc:
        return Preview(errors=field_errors(exc, TEMPLATE_FIELDS))
    return Preview(rendered=rendered, generated_text=not values.get("text", "").strip())


def _page(
    request: Request,
    web: WebDep,
    user: WebUser,
    template: TemplateRead | None,
    editor: Editor,
    *,
    version: int | None = None,
    status: int = 200,
) -> Response:
    history = web.pr.templates.history(template.name) if template else []
    response = web.page(
        request,
        "template_form.html",
        status=status,
        title=f"Template {template.name}" if template else "New template",
        template=template,
        version=template.version if version is None and template else version,
        history=history,
        e=editor,
        can_edit=user.can_edit,
        origins=TemplateOrigin,
    )
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    return response


def _preview_response(
    request: Request, web: WebDep, user: WebUser, template: TemplateRead | None, editor: Editor
) -> Response:
    name = template.name if template else "unsaved"
    editor.preview = _preview(web, name, editor.values)
    status = 200 if editor.preview.rendered else 422
    if request.headers.get("x-requested-with") == FETCH_HEADER:
        return web.fragment("_template_preview.html", status=status, preview=editor.preview)
    version = _version(editor.values.get("version", ""))
    return _page(request, web, user, template, editor, version=version, status=status)


def _refusal(preview: Preview) -> str | None:
    """Why the form's values cannot be saved as they are, or None."""
    if preview.problem is not None:
        return (
            f"The template fails on its sample data ({preview.problem.where}): "
            "the preview says why."
        )
    if preview.errors:
        return "Fix the fields named in the preview."
    return None


def _version(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and len(raw) < 10 else None


# -- pages ------------------------------------------------------------------------------------


def templates_page(request: Request, web: WebDep, user: UserDep) -> Response:
    """Every template: built-ins, overrides of them, and custom ones."""
    used: dict[str, int] = {}
    for sub in web.pr.notifications.subscriptions.list():
        used[sub.template] = used.get(sub.template, 0) + 1
    return web.page(
        request,
        "templates_list.html",
        title="Templates",
        templates=web.pr.templates.list(),
        used=used,
        can_edit=user.can_edit,
    )


def new_page(request: Request, web: WebDep, user: UserDep) -> Response:
    return _page(request, web, user, None, Editor(values=dict(_BLANK)))


def edit_page(
    request: Request,
    web: WebDep,
    user: UserDep,
    name: str,
    from_version: Annotated[str, Query()] = "",
) -> Response:
    """The template in force (or, with ``from_version``, an older version loaded to restore)."""
    template = _find(web, name)
    shown, notice = template, None
    wanted = _version(from_version)
    if wanted is not None and wanted != template.version:
        older = [t for t in web.pr.templates.history(name) if t.version == wanted]
        if not older or older[0].deleted:
            raise PageNotFound(f"Template '{name}' has no version {from_version} to load.")
        shown = older[0]
        notice = (
            f"Loaded version {wanted} into the editor. Saving makes it the current version "
            f"({template.version + 1}); the history keeps every version."
        )
    editor = Editor(values=template_values(shown), notice=notice)
    editor.preview = _preview(web, name, editor.values)
    return _page(request, web, user, template, editor)


def create(request: Request, web: WebDep, user: UserDep, form: EditorForm) -> Response:
    """Preview a new template, or save it as version 1 (of a new name, or an override)."""
    editor = Editor(values=_form_values(form))
    if form.get("action") == "preview":
        return _preview_response(request, web, user, None, editor)
    try:
        data = template_data(editor.values, with_name=True)
        validate_model(TemplateSpec, data)  # every bad field at once, the name included
    except ValidationError as exc:
        editor.errors = field_errors(exc, TEMPLATE_FIELDS)
        return _page(request, web, user, None, editor, status=422)
    editor.preview = _preview(web, "unsaved", editor.values)
    editor.refused = _refusal(editor.preview)
    if editor.refused is None:
        try:
            saved = web.pr.templates.create(data, actor=user.actor)
        except ValidationError as exc:
            editor.errors = field_errors(exc, TEMPLATE_FIELDS)
        except Conflict as exc:
            editor.errors = {"name": [exc.message]}
        else:
            web.flash(request, "success", f"Template '{saved.name}' created.")
            return see_other(f"{LIST}/{saved.name}")
    return _page(request, web, user, None, editor, status=422)


def update(request: Request, web: WebDep, user: UserDep, name: str, form: EditorForm) -> Response:
    """Preview the unsaved values, or save them as a new version (refused when stale)."""
    template = _find(web, name)
    editor = Editor(values=_form_values(form) | {"name": template.name})
    editor.values["version"] = form.get("version", "")
    if form.get("action") == "preview":
        return _preview_response(request, web, user, template, editor)
    version = _version(editor.values["version"])
    editor.preview = _preview(web, name, editor.values)
    editor.refused = _refusal(editor.preview)
    if editor.refused is not None:
        editor.errors = editor.preview.errors
        return _page(request, web, user, template, editor, version=version, status=422)
    try:
        saved = web.pr.templates.update(
            name, template_data(editor.values, with_name=False), version=version,
            actor=user.actor,
        )  # fmt: skip
    except ValidationError as exc:
        editor.errors = field_errors(exc, TEMPLATE_FIELDS)
        return _page(request, web, user, template, editor, version=version, status=422)
    except StaleVersion as exc:
        editor.stale = exc.message
        return _page(request, web, user, template, editor, version=version, status=409)
    web.flash(request, "success", f"Template '{name}' saved as version {saved.version}.")
    return see_other(f"{LIST}/{name}")


def delete_page(request: Request, web: WebDep, user: UserDep, name: str) -> Response:
    template = _find(web, name)
    if template.origin == TemplateOrigin.BUILTIN:
        raise PageNotFound(
            f"'{name}' is a built-in template as shipped: there is nothing to delete."
        )
    return _delete_page(request, web, template)


def _delete_page(
    request: Request, web: WebDep, template: TemplateRead, *, error: str | None = None
) -> Response:
    return web.page(
        request,
        "template_delete.html",
        status=409 if error else 200,
        title=f"{'Revert' if template.origin == TemplateOrigin.OVERRIDE else 'Delete'} {template.name}",
        template=template,
        error=error,
    )


def delete(request: Request, web: WebDep, user: UserDep, name: str, form: EditorForm) -> Response:
    """Delete a custom template, or an override (the built-in is in force again)."""
    template = _find(web, name)
    try:
        builtin = web.pr.templates.delete(
            name, version=_version(form.get("version", "")), actor=user.actor
        )
    except (Conflict, NotFound) as exc:  # StaleVersion is a Conflict
        return _delete_page(request, web, template, error=exc.message)
    if builtin is not None:
        web.flash(request, "success", f"Template '{name}' is the built-in again.")
        return see_other(f"{LIST}/{name}")
    web.flash(request, "success", f"Template '{name}' deleted; its history is kept.")
    return see_other(LIST)


ROUTES = [
    Route(LIST, templates_page),
    Route(NEW, new_page),
    Route(NEW, create, ["POST"]),
    Route(LIST + "/{name}", edit_page),
    Route(LIST + "/{name}", update, ["POST"]),
    Route(LIST + "/{name}/delete", delete_page),
    Route(LIST + "/{name}/delete", delete, ["POST"]),
]
