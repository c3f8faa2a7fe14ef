"""The plumbing every page shares: state, sessions, CSRF, roles, error pages, flash messages.

Web routes use :class:`WebRoute`, which turns the web errors below (and postroom's
NotFound/PermissionDenied) into HTML pages, so the API's JSON error handlers never see them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from postroom.accounts import AdminRole
from postroom.app import Postroom
from postroom.errors import Conflict, NotFound, PermissionDenied, PostroomError, ValidationError
from postroom.web.headers import apply_security_headers
from postroom.web.render import Templates
from postroom.web.security import (
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    Signer,
    WebSession,
    load_installation_secret,
    new_session,
)

__all__ = [
    "CsrfRejected",
    "EditorForm",
    "Forbidden",
    "LoginRequired",
    "PageNotFound",
    "PostForm",
    "SessionDep",
    "UserDep",
    "WebDep",
    "WebError",
    "WebRoute",
    "WebState",
    "WebUser",
    "see_other",
]

FLASH_COOKIE = "postroom_flash"


class WebError(Exception):
    """A request the UI answers with an error page."""

    status = 400
    title = "Something is wrong with this request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LoginRequired(WebError):
    status = 303
    title = "Sign in"


class CsrfRejected(WebError):
    status = 403
    title = "This form has expired"


class Forbidden(WebError):
    status = 403
    title = "Not allowed"


class PageNotFound(WebError):
    status = 404
    title = "Not found"


@dataclass(frozen=True)
class WebUser:
    name: str
    role: str

    @property
    def actor(self) -> str:
        """What the audit log records for this person."""
        return f"web:{self.name}"

    @property
    def can_edit(self) -> bool:
        return self.role == AdminRole.ADMIN


class WebState:
    """What the web UI keeps for one Postroom: templates and keys. Sessions and throttles
    live in the database (``pr.admin_sessions``, ``pr.throttles``), shared by every process."""

    def __init__(self, pr: Postroom) -> None:
        self.pr = pr
        self.templates = Templates()
        self._signer: Signer | None = None
        self._lock = threading.Lock()
        self._jobs: ThreadPoolExecutor | None = None

    def later(self, job: Callable[..., None], /, *args: Any) -> None:
        """Run ``job(*args)`` in a worker thread, detached from the request: neither the
        answer nor the next request on the same connection waits for it."""
        with self._lock:
            if self._jobs is None:
                self._jobs = ThreadPoolExecutor(max_workers=2, thread_name_prefix="postroom-web")
            jobs = self._jobs
        jobs.submit(job, *args).add_done_callback(_log_failure)

    @property
    def signer(self) -> Signer:
        """Keys for cookies and sealed values, loaded from the database on first use."""
        with self._lock:
            if self._signer is None:
                self._signer = Signer(load_installation_secret(self.pr))
            return self._signer

    def sign_in(self, request: Request, user: str, role: str) -> None:
        """Start a new session for ``user`` (new id and CSRF token: no session fixation),
        recorded in the database so every process sees it, and sign-out ends it everywhere."""
        session = get_session(request).signed_in(user, role)
        self.pr.admin_sessions.start(session.sid, user)
        set_session(request, session)

    def sign_out(self, request: Request) -> None:
        """End this browser's session in the database; it gets a fresh anonymous one."""
        self.pr.admin_sessions.end(get_session(request).sid)
        set_session(request, new_session())

    def secure(self, request: Request) -> bool:
        """Whether cookies get the Secure flag: the public URL or this request is https."""
        public = self.pr.settings.public_url or ""
        return public.startswith("https://") or request.url.scheme == "https"

    # -- responses ------------------------------------------------------------------------

    def page(
        self, request: Request, template: str, /, *, status: int = 200, **ctx: Any
    ) -> Response:
        """Render a full page with what every page needs (user, CSRF token, flash)."""
        session = get_session(request)
        user = WebUser(session.user, session.role or "") if session.user else None
        html = self.templates.render(
            template,
            user=user,
            csrf_token=session.csrf,
            flashes=self._take_flashes(request),
            path=request.url.path,
            **ctx,
        )
        return HTMLResponse(html, status_code=status)

    def fragment(self, template: str, /, *, status: int = 200, **ctx: Any) -> Response:
        """Render a piece of a page (for the form's script)."""
        return HTMLResponse(self.templates.render(template, **ctx), status_code=status)

    def error_page(self, request: Request, exc: WebError) -> Response:
        return self.page(
            request, "error.html", status=exc.status, title=exc.title, message=exc.message
        )

    def not_found_page(self, request: Request) -> Response:
        """The UI's not-found page for a path no route matched (outside any web route)."""
        request.state.web = self
        response = self.error_page(
            request,
            PageNotFound("There is no such page. Use the menu to find what you were looking for."),
        )
        self.finish(request, response)
        return response

    def flash(self, request: Request, kind: str, text: str) -> None:
        """Show ``text`` on the next page this browser renders."""
        pending: list[list[str]] = getattr(request.state, "flash_out", [])
        pending.append([kind, text])
        request.state.flash_out = pending

    def _take_flashes(self, request: Request) -> list[list[str]]:
        out: list[list[str]] = list(getattr(request.state, "flash_out", []))
        request.state.flash_out = []
        raw = request.cookies.get(FLASH_COOKIE)
        if raw:
            request.state.flash_clear = True
            data = self.signer.unsign("flash", raw)
            items = data.get("items") if data else None
            if isinstance(items, list):
                out = [[str(k), str(t)] for k, t in items if isinstance(k, str)] + out
        return out

    def finish(self, request: Request, response: Response) -> None:
        """Cookies and security headers on every web response."""
        secure = self.secure(request)
        if getattr(request.state, "session_changed", False):
            response.set_cookie(
                SESSION_COOKIE,
                get_session(request).to_cookie(self.signer),
                max_age=SESSION_MAX_AGE_S,
                httponly=True,
                samesite="lax",
                secure=secure,
                path="/",
            )
        pending = getattr(request.state, "flash_out", [])
        if pending:
            value = self.signer.sign("flash", {"items": pending[-5:]})
            response.set_cookie(
                FLASH_COOKIE, value, max_age=300, httponly=True, samesite="lax", secure=secure
            )
        elif getattr(request.state, "flash_clear", False):
            response.delete_cookie(FLASH_COOKIE, httponly=True, samesite="lax", secure=secure)
        apply_security_headers(response.headers)


def _log_failure(future: Future[None]) -> None:
    exc = future.exception()
    if exc is not None:
        logging.getLogger("postroom.web").error(
            "a background job of the web UI failed", exc_info=exc
        )


def _unexpected(exc: PostroomError) -> WebError:
    error = WebError(exc.message)
    if isinstance(exc, Conflict):
        error.status, error.title = 409, "Not done"
    elif isinstance(exc, ValidationError):
        error.status, error.title = 422, "Not valid"
    else:
        error.status, error.title = 500, "Postroom could not do this"
    return error


def see_other(url: str) -> Response:
    """Redirect after a POST (303: the browser follows with a GET)."""
    return RedirectResponse(url, status_code=303)


class WebRoute(APIRoute):
    """A route whose errors become pages; subclassed per router with ``web`` set."""

    web: ClassVar[WebState]

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        web = self.web

        async def route(request: Request) -> Response:
            request.state.web = web
            try:
                response = await handler(request)
            except LoginRequired:
                target = request.url.path
                if request.method == "GET" and request.url.query:
                    target += "?" + request.url.query
                response = see_other("/login?next=" + quote(target, safe="/"))
            except WebError as exc:
                response = web.error_page(request, exc)
            except NotFound as exc:
                response = web.error_page(request, PageNotFound(exc.message))
            except PermissionDenied as exc:
                response = web.error_page(request, Forbidden(exc.message))
            except PostroomError as exc:
                # Pages handle the errors they expect; any other one still gets a page, in
                # words for people (postroom's messages never contain a secret).
                response = web.error_page(request, _unexpected(exc))
            web.finish(request, response)
            return response

        return route


# -- dependencies ---------------------------------------------------------------------------


def get_web(request: Request) -> WebState:
    web: WebState = request.state.web
    return web


WebDep = Annotated[WebState, Depends(get_web)]


def get_session(request: Request) -> WebSession:
    """This browser's session; a new anonymous one when the cookie is missing or stale."""
    cached: WebSession | None = getattr(request.state, "session", None)
    if cached is not None:
        return cached
    web = get_web(request)
    session = WebSession.from_cookie(web.signer, request.cookies.get(SESSION_COOKIE))
    if session is not None and session.user is not None:
        # a signed-in cookie counts only while its session row lives (sign-out, a new
        # password or a deleted account end it in every process); the role is the account's
        current = web.pr.admin_sessions.current(session.sid)
        session = None if current is None else replace(session, user=current[0], role=current[1])
    if session is None:
        session = new_session()
        request.state.session_changed = True
    request.state.session = session
    return session


def set_session(request: Request, session: WebSession) -> None:
    """Replace this browser's session (sign-in, sign-out)."""
    request.state.session = session
    request.state.session_changed = True


SessionDep = Annotated[WebSession, Depends(get_session)]


def current_user(session: SessionDep) -> WebUser:
    """The signed-in person; anonymous visitors are sent to the sign-in page."""
    if session.user is None:
        raise LoginRequired("Sign in to continue.")
    return WebUser(session.user, session.role or AdminRole.VIEWER)


UserDep = Annotated[WebUser, Depends(current_user)]


async def checked_form(request: Request, session: SessionDep) -> dict[str, str]:
    """The submitted form, after checking its CSRF token against the session's."""
    form = await request.form()
    values = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    if not session.csrf_ok(values.get("csrf_token")):
        raise CsrfRejected(
            "The form was sent without a valid security token (it may have been open too "
            "long, or sent from another site). Go back, reload the page and try again."
        )
    return values


PostForm = Annotated[dict[str, str], Depends(checked_form)]


def editor_form(user: UserDep, form: PostForm) -> dict[str, str]:
    """A checked form from someone whose role may change things; viewers get 403."""
    if not user.can_edit:
        raise Forbidden(
            f"Your account '{user.name}' has the viewer role: it can look at every page but "
            "not change anything. Ask an administrator."
        )
    return form


EditorForm = Annotated[dict[str, str], Depends(editor_form)]
