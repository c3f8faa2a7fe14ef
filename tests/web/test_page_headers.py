"""Pages served outside the admin UI's router carry the same security headers as its pages."""

from __future__ import annotations

import re
import warnings

from postroom import Postroom
from postroom.api import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

_SAME = ("content-security-policy", "x-frame-options", "x-content-type-options", "cache-control")


def test_oauth2_callback_page_has_the_ui_security_headers(sqlite_app: Postroom) -> None:
    with TestClient(create_app(sqlite_app), follow_redirects=False) as client:
        ui_page = client.get("/login")
        assert ui_page.status_code == 200
        for url in ("/oauth2/callback", "/oauth2/callback?state=forged&code=abc"):
            page = client.get(url)
            assert page.status_code == 400 and "Sign-in failed" in page.text
            for name in _SAME:
                assert page.headers.get(name) == ui_page.headers[name], (url, name)
            # the URL carried a code: stricter than the UI's same-origin
            assert page.headers["referrer-policy"] == "no-referrer"
            # the CSP allows no inline style: the page must not rely on one
            assert not re.search(r"<style|style=", page.text)
            assert 'href="/static/app.css"' in page.text
