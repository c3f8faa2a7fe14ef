"""``/unsubscribe/{token}``: GET confirms (scanners prefetch links), POST removes the
subscription — also RFC 8058 one-click (``List-Unsubscribe-Post``) from mail clients."""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from postroom.actions.pages import page
from postroom.app import Postroom
from postroom.errors import NotFound

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def confirm(token: str) -> HTMLResponse:
    return page(
        "Unsubscribe",
        "<p>Stop receiving these notifications?</p>"
        f'<form method="post" action="/unsubscribe/{html.escape(token)}">'
        '<button type="submit">Unsubscribe</button></form>',
    )


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(token: str, request: Request) -> HTMLResponse:
    postroom: Postroom = request.app.state.postroom
    try:
        removed = postroom.notifications.unsubscribe(token)
    except NotFound:
        return page(
            "Nothing to unsubscribe",
            "<p>This link is not valid any more: the subscription was already removed.</p>",
            404,
        )
    return page(
        "Unsubscribed",
        f"<p>{html.escape(removed.address)} will no longer receive "
        f"“{html.escape(removed.event)}” notifications.</p>",
    )
