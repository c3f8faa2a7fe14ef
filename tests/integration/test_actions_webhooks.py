"""Action webhooks: checked when created, delivered to the checked address without
environment proxies, signed with a secret of their own that the creator sees once."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from postroom import Postroom
from postroom.actions.service import ActionRead
from postroom.actions.tables import ActionKey, ActionRequest
from postroom.api import create_app
from postroom.inbound.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.integration.test_actions import setup, token_of

#: loopback is internal: positive tests allow it as an operator would allow a range
LOOPBACK_ALLOWED = {"action_webhook_allow": "127.0.0.0/8"}


@dataclass
class Receiver:
    port: int = 0
    status: int = 200
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    got: threading.Event = field(default_factory=threading.Event)


@contextmanager
def receiver(address: str = "127.0.0.1", port: int = 0, status: int = 200) -> Iterator[Receiver]:
    seen = Receiver(status=status)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.requests.append((dict(self.headers.items()), body))
            seen.got.set()
            self.send_response(seen.status)
            self.end_headers()

        do_GET = do_POST  # noqa: N815 - a proxy would see GETs for http:// URLs as well

    server = ThreadingHTTPServer((address, port), Handler)
    seen.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(2)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


def create(app: Postroom, url: str) -> ActionRead:
    return app.actions.create(process="release-pipeline", to=["lead@postroom.test"],
                              subject="Deploy?", text="?", choices=["approve", "reject"],
                              webhook_url=url)  # fmt: skip


def status_of(app: Postroom, action_id: str) -> str | None:
    with app.sessions() as s:
        return s.scalar(select(ActionRequest.webhook_status).where(ActionRequest.id == action_id))


def test_decision_webhook_is_signed_with_its_own_secret_and_names_the_event(
    app_factory: Callable[..., Postroom], backend: str
) -> None:
    app = app_factory(backend, **LOOPBACK_ALLOWED)
    setup(app, 1)
    with receiver() as hook:
        a = create(app, f"http://127.0.0.1:{hook.port}/hooks/postroom")
        assert a.webhook_secret and a.webhook_secret.startswith("whsec_")
        assert app.actions.get(a.id).webhook_secret is None  # shown once, at creation
        app.actions.decide_by_link(token_of(a.links["approve"]))
        wait_for(lambda: status_of(app, a.id))
    assert status_of(app, a.id) == "delivered (200)"
    ((headers, body),) = hook.requests
    assert headers["X-Postroom-Event"] == "action.decided"
    assert headers["X-Postroom-Action"] == a.id
    assert verify(a.webhook_secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    sent = json.loads(body)
    assert sent["event"] == "action.decided" and sent["action"]["decision"] == "approve"
    assert "webhook_secret" not in sent["action"]
    # the link-signing key (which receivers must never hold) does not sign it
    with app.sessions() as s:
        keys = [app.box.decrypt(k.key).encode() for k in s.scalars(select(ActionKey))]
        stored = s.scalars(select(ActionRequest.webhook_secret)).one()
    stamp = headers[TIMESTAMP_HEADER].encode()
    for key in keys:
        mac = hmac.new(key, stamp + b"." + body, hashlib.sha256).hexdigest()
        assert headers[SIGNATURE_HEADER] != f"v1={mac}"
    assert stored and a.webhook_secret not in stored  # kept encrypted


def test_a_failing_receiver_is_retried_a_bounded_number_of_times(
    app_factory: Callable[..., Postroom],
) -> None:
    app = app_factory("sqlite", **LOOPBACK_ALLOWED)
    setup(app, 1)
    app.actions.webhook_backoff_s = 0.01
    with receiver(status=503) as hook:
        a = create(app, f"http://127.0.0.1:{hook.port}/")
        app.actions.decide_by_link(token_of(a.links["reject"]))
        wait_for(lambda: status_of(app, a.id))
    assert status_of(app, a.id) == "failed: HTTP 503" and len(hook.requests) == 5


def test_webhook_ignores_proxies_from_the_environment(
    app_factory: Callable[..., Postroom], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_factory("sqlite", **LOOPBACK_ALLOWED)
    setup(app, 1)
    with receiver() as proxy, receiver() as hook:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        a = create(app, f"http://127.0.0.1:{hook.port}/hook")
        app.actions.decide_by_link(token_of(a.links["approve"]))
        wait_for(lambda: status_of(app, a.id))
    assert status_of(app, a.id) == "delivered (200)"
    assert proxy.requests == [] and len(hook.requests) == 1


def test_webhook_connects_to_the_address_it_checked_not_a_rebound_answer(
    app_factory: Callable[..., Postroom], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 127.0.0.2 plays the internal service a rebinding DNS answer points at
    app = app_factory("sqlite", net_deny="127.0.0.2/32", **LOOPBACK_ALLOWED)
    setup(app, 1)
    real = socket.getaddrinfo
    answers = {"rebind": False, "calls": 0}

    def rebinding_dns(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "hooks.rebind.test":
            return real(host, port, *args, **kwargs)
        answers["calls"] += 1
        # once armed, the first answer is the checked one, every later one rebinds
        address = "127.0.0.2" if answers["rebind"] and answers["calls"] > 1 else "127.0.0.1"
        return real(address, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    with receiver("127.0.0.1") as hook, receiver("127.0.0.2", hook.port) as internal:
        a = create(app, f"http://hooks.rebind.test:{hook.port}/hook")
        answers.update(rebind=True, calls=0)
        app.actions.decide_by_link(token_of(a.links["approve"]))
        wait_for(lambda: status_of(app, a.id))
    assert internal.requests == []
    assert status_of(app, a.id) == "delivered (200)" and len(hook.requests) == 1
    assert hook.requests[0][0]["Host"] == f"hooks.rebind.test:{hook.port}"


def test_webhook_urls_are_checked_when_the_action_is_created(app: Postroom) -> None:
    setup(app, 1)
    key = app.accounts.create_api_key("wf", role="sender").key
    client = TestClient(create_app(app), headers={"Authorization": f"Bearer {key}"})
    body = {"process": "release-pipeline", "to": ["lead@postroom.test"], "subject": "Go?",
            "text": "?", "choices": ["approve", "reject"]}  # fmt: skip
    for url, words in [
        ("http://127.0.0.1:8600/api/v1/profiles", "network policy"),  # loopback: internal
        ("http://localhost:5432/", "network policy"),  # a name is judged by its addresses
        ("http://[::ffff:127.0.0.1]:80/", "network policy"),
        ("ftp://hooks.example.com/", "https://"),
        ("https://user:pw@hooks.example.com/", "user name"),
    ]:
        r = client.post("/api/v1/actions", json={**body, "webhook_url": url})
        assert r.status_code == 422, (url, r.text)
        error = r.json()["error"]
        assert error["field"] == "webhook_url" and words in error["message"], (url, error)
    # every problem at once
    r = client.post(
        "/api/v1/actions",
        json={**body, "choices": [], "webhook_url": "http://127.0.0.1:9/"},
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["error"]["errors"]} == {"choices", "webhook_url"}
    with app.sessions() as s:
        assert s.scalars(select(ActionRequest)).all() == []


def test_loopback_the_operator_denies_stays_denied_when_loopback_is_allowed(
    app_factory: Callable[..., Postroom],
) -> None:
    app = app_factory("sqlite", net_deny="127.0.0.2/32", **LOOPBACK_ALLOWED)
    setup(app, 1)
    from postroom.errors import ValidationError

    with pytest.raises(ValidationError) as caught:
        create(app, "http://127.0.0.2:9/hook")
    assert caught.value.field == "webhook_url" and "network policy" in str(caught.value)


def test_webhook_secrets_survive_a_key_rotation_that_retires_the_old_key(
    app_factory: Callable[..., Postroom],
) -> None:
    app = app_factory("sqlite", **LOOPBACK_ALLOWED)
    setup(app, 1)
    with receiver() as hook:
        a = create(app, f"http://127.0.0.1:{hook.port}/hook")
        assert a.webhook_secret
        app.rotate_keys(retire_old=True)  # re-encrypts every secret, then drops the old key
        app.actions.decide_by_link(token_of(a.links["approve"]))
        wait_for(lambda: status_of(app, a.id))
    assert status_of(app, a.id) == "delivered (200)"
    ((headers, body),) = hook.requests
    assert verify(a.webhook_secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
