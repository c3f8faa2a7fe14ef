"""The profile form: new and edit, save, Test SMTP / Test IMAP on unsaved values, presets.

One POST endpoint per form takes ``action`` = ``save`` | ``test_smtp`` | ``test_imap`` |
``apply_preset`` | ``detect`` (fill the servers suggested for ``detect_address``; nothing is
saved until Save). The form's script posts tests with ``X-Requested-With: postroom-fetch``
and gets back just the diagnosis; without JavaScript the whole form comes back, values kept.
A password typed but not yet saved returns only sealed (encrypted for this session), never
as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio.from_thread
from fastapi import Query, Request, Response

from postroom.diagnostics.steps import Diagnosis
from postroom.errors import ConnectionTestsDisabled, RateLimited, StaleVersion, ValidationError
from postroom.profiles.detect import Detection
from postroom.profiles.schemas import NOW_DEFAULT, ProfileRead
from postroom.profiles.service import ProfileInUse
from postroom.web.core import EditorForm, SessionDep, UserDep, WebDep, WebUser, see_other
from postroom.web.forms import (
    LABELS,
    FormValues,
    blank_values,
    errors_by_field,
    input_id,
    profile_data,
    values_from_form,
    values_from_profile,
)
from postroom.web.presets import PRESETS, apply_preset, preset_note, presets_json
from postroom.web.security import WebSession
from postroom.web.views.common import Route, find_profile

__all__ = ["ROUTES"]

FETCH_HEADER = "postroom-fetch"
_SIDES = ("smtp", "imap")
_SEAL_TTL_S = 3600
# The sender is not used by a test that sends nothing; a placeholder keeps validation quiet.
_TEST_SENDER = "postroom-test@example.com"


@dataclass
class FormState:
    values: FormValues
    errors: dict[str, list[str]] = field(default_factory=dict)
    diagnosis: Diagnosis | None = None
    test_kind: str | None = None
    test_note: str | None = None
    #: why the test did not run: too many tests, or tests turned off by the operator
    test_refused: str | None = None
    test_refused_code: str = ""
    notice: str | None = None
    preset: str = ""
    send_to: str = ""
    detect_address: str = ""
    detection: Detection | None = None


def _purpose(session: WebSession) -> str:
    return f"form-password:{session.sid}"


def _unseal(web: WebDep, session: WebSession, form: dict[str, str], values: FormValues) -> None:
    """Put back passwords typed before a test or a failed save (sealed in hidden fields)."""
    for side in _SIDES:
        name = f"{side}.password"
        token = form.get(f"{name}_sealed", "")
        if not values.get(name) and token:
            plain = web.signer.unseal(_purpose(session), token, ttl_s=_SEAL_TTL_S)
            if plain:
                values[name] = plain


def _summary(errors: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """(input id, label, message) for the list of problems at the top of the form."""
    out = []
    for name, messages in errors.items():
        for message in messages:
            out.append((input_id(name) if name else "", LABELS.get(name, ""), message))
    return out


def render_form(
    request: Request,
    web: WebDep,
    user: WebUser,
    session: WebSession,
    profile: ProfileRead | None,
    state: FormState,
    *,
    status: int = 200,
) -> Response:
    """The whole form page, from ``state``."""
    values = dict(state.values)
    values["detect_address"] = state.detect_address
    sealed: dict[str, str] = {}
    secret_state: dict[str, str] = {}
    for side in _SIDES:
        typed = values.pop(f"{side}.password", "")
        if typed:
            sealed[side] = web.signer.seal(_purpose(session), typed)
            secret_state[side] = "entered"
        elif profile is not None and (getattr(profile, side) or {}).get("password_set"):
            secret_state[side] = "stored"
        else:
            secret_state[side] = "none"
    imap_open = (
        values.get("imap.enabled") == "1"
        or state.test_kind == "imap"
        or any(name.startswith("imap.") for name in state.errors)
    )
    action_url = f"/settings/email/profiles/{profile.id}" if profile else "/settings/email/new"
    return web.page(
        request,
        "profile_form.html",
        status=status,
        title=f"Edit {profile.name}" if profile else "New profile",
        profile=profile,
        action_url=action_url,
        values=values,
        errors=state.errors,
        summary=_summary(state.errors),
        sealed=sealed,
        secret_state=secret_state,
        imap_open=imap_open,
        diagnosis=state.diagnosis,
        test_kind=state.test_kind,
        test_note=state.test_note,
        refused=state.test_refused,
        refused_code=state.test_refused_code,
        tests_disabled=web.pr.settings.connection_tests == "disabled",
        notice=state.notice,
        presets=PRESETS,
        presets_data=presets_json(),
        preset=state.preset,
        preset_note=preset_note(state.preset),
        send_to=state.send_to,
        detection=state.detection,
        oauth2_options=[("", "— choose a configuration —")]
        + [(c.name, c.name) for c in web.pr.oauth2.list()],
        can_edit=user.can_edit,
    )


def new_profile_page(
    request: Request,
    web: WebDep,
    user: UserDep,
    session: SessionDep,
    from_: Annotated[str, Query(alias="from")] = "",
) -> Response:
    """An empty form, or a copy of another profile (``?from=<id>``) without its secrets."""
    state = FormState(values=blank_values())
    if from_:
        source = find_profile(web.pr, from_)
        state.values = values_from_profile(source)
        state.values["name"] = _copy_name(web, source.name)
        state.notice = (
            f"A copy of '{source.name}'. Passwords are not copied: enter them again before saving."
        )
    return render_form(request, web, user, session, None, state)


def _copy_name(web: WebDep, name: str) -> str:
    taken = {p.name.casefold() for p in web.pr.profiles.list()}
    for n in range(1, 100):
        candidate = f"{name} (copy)" if n == 1 else f"{name} (copy {n})"
        if candidate.casefold() not in taken:
            return candidate[:100]
    return name[:93] + " (copy)"


def edit_profile_page(
    request: Request, web: WebDep, user: UserDep, session: SessionDep, profile_id: str
) -> Response:
    """The form of a saved profile, with its warnings."""
    profile = find_profile(web.pr, profile_id)
    state = FormState(values=values_from_profile(profile))
    return render_form(request, web, user, session, profile, state)


def create_profile(
    request: Request, web: WebDep, user: UserDep, session: SessionDep, form: EditorForm
) -> Response:
    return _submit(request, web, user, session, form, None)


def update_profile(
    request: Request,
    web: WebDep,
    user: UserDep,
    session: SessionDep,
    profile_id: str,
    form: EditorForm,
) -> Response:
    return _submit(request, web, user, session, form, find_profile(web.pr, profile_id))


def _submit(
    request: Request,
    web: WebDep,
    user: WebUser,
    session: WebSession,
    form: dict[str, str],
    profile: ProfileRead | None,
) -> Response:
    action = form.get("action", "save")
    values = values_from_form(form)
    _unseal(web, session, form, values)
    state = FormState(
        values=values,
        preset=form.get("preset", ""),
        send_to=form.get("test_send_to", "").strip(),
        detect_address=form.get("detect_address", "").strip(),
    )
    if action == "apply_preset":
        state.values = values = apply_preset(values, state.preset)
        return render_form(request, web, user, session, profile, state)
    if action == "detect":
        status = _detect(web, state)
        return render_form(request, web, user, session, profile, state, status=status)
    if action in ("test_smtp", "test_imap"):
        return _test(request, web, user, session, profile, state, kind=action[5:])
    data = profile_data(values)
    try:
        if profile is None:
            saved = web.pr.profiles.create(data, actor=user.actor)
        else:
            version = form.get("version", "")
            saved = web.pr.profiles.update(
                profile.name,
                data,
                version=int(version) if version.isdigit() else None,
                actor=user.actor,
            )
    except ValidationError as exc:
        state.errors = errors_by_field(exc.errors, values)
        return render_form(request, web, user, session, profile, state, status=422)
    except (StaleVersion, ProfileInUse) as exc:
        target = "enabled" if isinstance(exc, ProfileInUse) else ""
        state.errors = {target: [exc.message]}
        return render_form(request, web, user, session, profile, state, status=409)
    verb = "created" if profile is None else "saved"
    message = f"Profile '{saved.name}' {verb}."
    if profile is None and saved.is_default:
        message += " " + NOW_DEFAULT
    web.flash(request, "success", message)
    return see_other(f"/settings/email/profiles/{saved.id}")


def _detect(web: WebDep, state: FormState) -> int:
    """Fill the form with the best suggestion for ``detect_address``; the status to answer."""

    async def go() -> Detection:
        return await web.pr.adetect_profile(state.detect_address)

    try:
        state.detection = anyio.from_thread.run(go)
    except ValidationError as exc:
        state.errors = {"detect_address": [e.message for e in exc.errors]}
        return 422
    if state.detection.suggestions:
        best = state.detection.suggestions[0]
        state.values |= best.form_values()
        if not state.values.get("sender.from_address"):
            state.values["sender.from_address"] = state.detection.address
        if best.provider:
            state.preset = best.provider
    return 200


def _unchanged(profile: ProfileRead, values: FormValues, kind: str) -> bool:
    """True when the form tests exactly the saved settings (so the result is kept)."""
    if values.get(f"{kind}.password") or getattr(profile, kind) is None:
        return False
    use_imap = kind == "imap"
    now = profile_data(values, imap=use_imap)[kind]
    saved = profile_data(values_from_profile(profile), imap=use_imap)[kind]
    return bool(now == saved)


def _test(
    request: Request,
    web: WebDep,
    user: WebUser,
    session: WebSession,
    profile: ProfileRead | None,
    state: FormState,
    *,
    kind: str,
) -> Response:
    values = state.values
    state.test_kind = kind
    send_to = state.send_to if kind == "smtp" else ""
    data = profile_data(values, imap=kind == "imap")
    if not str(data.get("name") or "").strip():
        data["name"] = profile.name if profile else "Unsaved profile"
    if not str(data["sender"].get("from_address") or "").strip() and not send_to:
        data["sender"]["from_address"] = _TEST_SENDER
    options: dict[str, Any] = {
        "smtp": kind == "smtp",
        "imap": kind == "imap",
        "send_to": send_to or None,
        "actor": user.actor,
        "limit_key": user.actor,  # the same limit as the REST API's tests
    }
    status = 200
    try:
        if profile is not None and _unchanged(profile, values, kind):
            state.test_note = "Tested the saved settings; the result is kept on the profile."
            state.diagnosis = _run(web, profile.name, None, options)
        else:
            state.diagnosis = _run(web, profile.name if profile else None, data, options)
    except ValidationError as exc:
        state.errors = errors_by_field(exc.errors, values)
        status = 422
    except (RateLimited, ConnectionTestsDisabled) as exc:
        state.test_refused, state.test_refused_code = exc.message, exc.code
        status = 429 if isinstance(exc, RateLimited) else 403
    if request.headers.get("x-requested-with") == FETCH_HEADER:
        response = web.fragment(
            "_test_result.html",
            status=status,
            diagnosis=state.diagnosis,
            kind=kind,
            note=state.test_note,
            refused=state.test_refused,
            refused_code=state.test_refused_code,
            summary=_summary(state.errors),
        )
        response.headers["X-Postroom-Result"] = "1"
        return response
    return render_form(request, web, user, session, profile, state, status=status)


def _run(
    web: WebDep, name: str | None, settings: dict[str, Any] | None, options: dict[str, Any]
) -> Diagnosis:
    """Run the async connection test from this worker thread on the server's event loop."""

    async def go() -> Diagnosis:
        return await web.pr.atest_profile(name, settings=settings, **options)

    return anyio.from_thread.run(go)


ROUTES = [
    Route("/settings/email/new", new_profile_page),
    Route("/settings/email/new", create_profile, ["POST"]),
    Route("/settings/email/profiles/{profile_id}", edit_profile_page),
    Route("/settings/email/profiles/{profile_id}", update_profile, ["POST"]),
]
