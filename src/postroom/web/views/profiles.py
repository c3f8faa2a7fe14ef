"""Email Settings: the profile list, and the actions on one profile.

Actions: test the saved profile, set as system default, enable/disable, delete. Disabling or
deleting a profile that processes depend on asks first, naming them.
"""

from __future__ import annotations

import anyio.from_thread
from fastapi import Request, Response

from postroom.diagnostics.steps import Diagnosis
from postroom.errors import Conflict
from postroom.profiles.schemas import NO_DEFAULT, ProfileRead
from postroom.profiles.service import ProfileInUse
from postroom.web.core import EditorForm, UserDep, WebDep, see_other
from postroom.web.views.common import Route, bound_counts, find_profile

__all__ = ["ROUTES"]

LIST = "/settings/email"
_UNCONFIRMED = "Nothing was changed: tick the box below to confirm, or go back."


def root() -> Response:
    """``/`` is Settings → Email."""
    return see_other(LIST)


def email_settings(request: Request, web: WebDep, user: UserDep) -> Response:
    """The profile list, or the empty state when there is none."""
    return web.page(
        request,
        "email_settings.html",
        title="Email Settings",
        profiles=web.pr.profiles.list(unused=request.query_params.get("unused") == "1"),
        only_unused=request.query_params.get("unused") == "1",
        counts=bound_counts(web.pr),
        no_default=NO_DEFAULT if web.pr.get_default() is None else None,
        can_edit=user.can_edit,
    )


def test_saved(
    request: Request, web: WebDep, user: UserDep, profile_id: str, form: EditorForm
) -> Response:
    """Test a saved profile from the list; the result is kept on it and shown as a message."""
    profile = find_profile(web.pr, profile_id)

    async def go() -> Diagnosis:
        return await web.pr.atest_profile(profile.name, actor=user.actor)

    diagnosis = anyio.from_thread.run(go)
    if diagnosis.ok:
        web.flash(request, "success", f"SMTP test of '{profile.name}' passed.")
    else:
        error = diagnosis.error
        detail = f"{error.code}: {error.message} {error.hint}" if error else "it failed."
        web.flash(request, "error", f"SMTP test of '{profile.name}' failed — {detail}")
    return see_other(LIST)


def set_default(
    request: Request, web: WebDep, user: UserDep, profile_id: str, form: EditorForm
) -> Response:
    """Make the profile the system default."""
    profile = find_profile(web.pr, profile_id)
    try:
        web.pr.set_default(profile.name, actor=user.actor)
    except Conflict as exc:
        web.flash(request, "error", exc.message)
    else:
        web.flash(request, "success", f"'{profile.name}' is now the system default profile.")
    return see_other(LIST)


def _confirm(
    request: Request,
    web: WebDep,
    profile: ProfileRead,
    *,
    verb: str,
    status: int = 200,
    error: str | None = None,
) -> Response:
    processes = [b.process for b in web.pr.bindings.list(profile=profile.name)]
    return web.page(
        request,
        "profile_confirm.html",
        status=status,
        title=f"{verb.capitalize()} {profile.name}",
        profile=profile,
        verb=verb,
        processes=processes,
        error=error,
    )


def set_enabled(
    request: Request, web: WebDep, user: UserDep, profile_id: str, form: EditorForm
) -> Response:
    """Enable, or disable (asking first when processes or the platform depend on it)."""
    profile = find_profile(web.pr, profile_id)
    enable = form.get("enabled") == "1"
    try:
        web.pr.profiles.update(
            profile.name, {"enabled": enable}, force=form.get("force") == "1", actor=user.actor
        )
    except ProfileInUse:
        if "confirm" in form:
            return _confirm(request, web, profile, verb="disable", status=409, error=_UNCONFIRMED)
        return _confirm(request, web, profile, verb="disable")
    web.flash(
        request, "success", f"Profile '{profile.name}' {'enabled' if enable else 'disabled'}."
    )
    return see_other(LIST)


def delete_page(request: Request, web: WebDep, user: UserDep, profile_id: str) -> Response:
    """Ask before deleting; name the processes that would be left without mail."""
    return _confirm(request, web, find_profile(web.pr, profile_id), verb="delete")


def delete(
    request: Request, web: WebDep, user: UserDep, profile_id: str, form: EditorForm
) -> Response:
    profile = find_profile(web.pr, profile_id)
    try:
        unbound = web.pr.profiles.delete(
            profile.name, force=form.get("force") == "1", actor=user.actor
        )
    except ProfileInUse:
        return _confirm(request, web, profile, verb="delete", status=409, error=_UNCONFIRMED)
    note = f" Unbound: {', '.join(unbound)}." if unbound else ""
    web.flash(request, "success", f"Profile '{profile.name}' deleted.{note}")
    return see_other(LIST)


ROUTES = [
    Route("/", root),
    Route(LIST, email_settings),
    Route("/settings/email/profiles/{profile_id}/test", test_saved, ["POST"]),
    Route("/settings/email/profiles/{profile_id}/default", set_default, ["POST"]),
    Route("/settings/email/profiles/{profile_id}/enabled", set_enabled, ["POST"]),
    Route("/settings/email/profiles/{profile_id}/delete", delete_page),
    Route("/settings/email/profiles/{profile_id}/delete", delete, ["POST"]),
]
