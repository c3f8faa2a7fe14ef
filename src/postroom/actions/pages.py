"""The pages behind action links: GET/HEAD confirm (change nothing), POST decides.

Self-contained HTML (inline CSS, no scripts): these pages open from an email client on
any device, often on a phone, and must not depend on the admin UI.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from postroom.actions.service import LinkCheck
from postroom.app import Postroom

__all__ = ["page", "router"]

router = APIRouter(include_in_schema=False)

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;"
    "color:#1d2433;line-height:1.5}h1{font-size:1.4rem}.box{border:1px solid #d5dae3;"
    "border-radius:8px;padding:1.25rem}button{font-size:1rem;padding:.6rem 1.4rem;border:0;"
    "border-radius:6px;background:#2b59c3;color:#fff;cursor:pointer}.muted{color:#5b6475}"
)
# scanners must not index or cache these pages; nothing may frame them
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body><main class="box"><h1>{html.escape(title)}</h1>{body}</main></body></html>'
    )
    return HTMLResponse(doc, status_code=status, headers=_HEADERS)


def _postroom(request: Request) -> Postroom:
    app: Postroom = request.app.state.postroom
    return app


def _problem(check: LinkCheck) -> HTMLResponse:
    if check.reason == "decided" and check.action is not None:
        a = check.action
        when = f"{a.decided_at:%Y-%m-%d %H:%M} UTC" if a.decided_at else ""
        return page(
            "Already decided",
            f"<p>“{html.escape(a.subject)}” was already decided: <strong>"
            f"{html.escape(a.decision or '')}</strong> by {html.escape(a.decided_by or '')} {when}.</p>"
            "<p class=muted>Nothing was changed.</p>",
            409,
        )
    if check.reason == "expired":
        return page(
            "This link has expired",
            "<p>The request can no longer be decided through this link.</p>",
            410,
        )
    return page(
        "This link is not valid",
        "<p>It may be incomplete or altered. Open it again from the email.</p>",
        404,
    )


@router.api_route("/actions/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
def confirm(token: str, request: Request) -> HTMLResponse:
    """Show what the link would do; change nothing (mail scanners open links too)."""
    check = _postroom(request).actions.check_link(token)
    if not check.ok or check.action is None or check.choice is None:
        return _problem(check)
    a = check.action
    return page(
        f"Confirm: {check.choice}",
        f"<p>{html.escape(a.subject)}</p>"
        f"<p class=muted>Request from {html.escape(a.process)} to {html.escape(check.recipient or '')}. "
        f"Open until {a.expires_at:%Y-%m-%d %H:%M} UTC.</p>"
        f'<form method="post" action="/actions/{html.escape(token)}">'
        f'<button type="submit">Confirm “{html.escape(check.choice)}”</button></form>',
    )


@router.post("/actions/{token}", response_class=HTMLResponse)
def decide(token: str, request: Request) -> HTMLResponse:
    """Record the decision (once)."""
    check = _postroom(request).actions.decide_by_link(token)
    if not check.ok or check.action is None:
        return _problem(check)
    return page(
        "Thank you",
        f"<p>Your decision <strong>{html.escape(check.choice or '')}</strong> on "
        f"“{html.escape(check.action.subject)}” was recorded.</p>",
    )
