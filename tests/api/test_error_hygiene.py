"""Every endpoint that takes a body, taken from the OpenAPI document: deeply nested JSON is
a 4xx error in the JSON shape (never a 500 or a dropped connection), and no validation
error quotes a value the caller sent."""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from postroom import Postroom
from postroom.api import create_app
from tests.api.helpers import API, basic_profile
from tests.integration.smtp_fakes import closed_port

BODY_METHODS = ("POST", "PUT", "PATCH")
DEEP = b"[" * 3000 + b"]" * 3000
DEEP_OBJECT = b'{"a":' * 3000 + b"1" + b"}" * 3000
SNEAKY = "Sneaky-9d2e-value"
PATH_VALUES = {"name": "QA alerts", "process": "nightly", "id": "1"}


def body_operations(client: TestClient) -> list[tuple[str, str, str]]:
    """(method, path template, concrete path) of every POST/PUT/PATCH operation the API
    documents."""
    doc = client.get(f"{API}/openapi.json").json()
    found = []
    for template, operations in doc["paths"].items():
        for method in operations:
            if method.upper() in BODY_METHODS:
                path = _concrete(template)
                assert "{" not in path, f"no test value for a parameter of {template}"
                found.append((method.upper(), template, path))
    assert len(found) >= 20
    return found


def reads_json(client: TestClient, method: str, path: str) -> bool:
    """Whether the operation parses a JSON body: it refuses one that is not JSON."""
    r = client.request(method, path, content=b"{not json", headers=_JSON)
    return r.status_code == 422 and "not valid JSON" in r.json()["error"]["message"]


_JSON = {"Content-Type": "application/json"}


@pytest.fixture
def seeded(app: Postroom) -> Postroom:
    app.profiles.create(basic_profile(host="127.0.0.1", port=closed_port(), security="none"))
    return app


def test_deep_json_is_a_json_4xx_on_every_endpoint(seeded: Postroom, make_client: Any) -> None:
    admin = make_client(
        seeded.accounts.create_api_key("ci", role="admin").key, raise_server_exceptions=False
    )
    checked = 0
    for method, _, path in body_operations(admin):
        reading = reads_json(admin, method, path)
        for deep in (DEEP, DEEP_OBJECT):
            r = admin.request(method, path, content=deep, headers=_JSON)
            assert 400 <= r.status_code < 500 or r.status_code in (200, 201), (method, path, r)
            if r.status_code >= 400:
                error = r.json()["error"]
                assert error["code"] and error["message"], (method, path)
            if reading:
                assert r.status_code == 422, (method, path, r.text)
                assert "levels deep" in r.json()["error"]["message"], (method, path)
                checked += 1
    assert checked >= 2 * 18  # every JSON-reading route, both shapes


# -- a real server: the connection stays usable ---------------------------------------------


@pytest.fixture
def live_port(sqlite_app: Postroom) -> Iterator[int]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        create_app(sqlite_app), host="127.0.0.1", port=port, log_level="critical",
        access_log=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def _exchange(sock: socket.socket, request: bytes) -> tuple[int, bytes]:
    """Send one HTTP/1.1 request on ``sock``; read one response (Content-Length framed)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":", 1)[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        body += chunk
    return int(head.split(b" ")[1]), body


def test_deep_json_keeps_the_connection_over_a_real_server(
    sqlite_app: Postroom, live_port: int
) -> None:
    key = sqlite_app.accounts.create_api_key("ci", role="admin").key
    request = (
        b"POST /api/v1/profiles HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\n"
        b"Content-Length: " + str(len(DEEP)).encode() + b"\r\n\r\n" + DEEP
    )
    with socket.create_connection(("127.0.0.1", live_port), timeout=10) as sock:
        status, body = _exchange(sock, request)
        assert status == 422 and b"levels deep" in body
        status, _ = _exchange(sock, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert status == 200


# -- no validation error quotes a submitted value -------------------------------------------

_PROFILE = basic_profile("New one", host="127.0.0.1", port=0, security="none")
_OAUTH2 = {
    "name": "corp", "provider": "generic", "grant": "client_credentials", "client_id": "app",
    "client_secret": "s3cret", "token_url": "https://login.example.com/token",
    "scopes": ["mail"],
}  # fmt: skip
_TEMPLATE = {"name": "t1", "subject": "Hello {{ who }}", "text": "Hi", "sample_data": {"who": "x"}}
_SUBSCRIPTION = {"event": "run.failed", "process": "nightly", "address": "ops@postroom.test",
                 "template": "t1", "filter": {"status": ["failed"]}}  # fmt: skip

#: A body for each JSON-reading route, valid or nearly so, so that each field's own
#: validation runs when that one field is replaced by a sneaky value.
BASES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/connection-tests"): {"profile": _PROFILE, "existing": "QA alerts"},
    ("POST", "/api/v1/profiles/{name}/test"): {"send_to": "bob@postroom.test"},
    ("POST", "/api/v1/profiles"): _PROFILE,
    ("PUT", "/api/v1/profiles/{name}"): _PROFILE,
    ("PATCH", "/api/v1/profiles/{name}"): _PROFILE,
    ("PUT", "/api/v1/bindings/{process}"): {"profile": "QA alerts"},
    ("PUT", "/api/v1/default-profile"): {"profile": "QA alerts"},
    ("POST", "/api/v1/oauth2-configs"): _OAUTH2,
    ("PUT", "/api/v1/oauth2-configs/{name}"): {k: v for k, v in _OAUTH2.items() if k != "name"},
    ("POST", "/api/v1/messages"): {
        "to": ["bob@postroom.test"], "cc": ["carol@postroom.test"], "subject": "s",
        "text": "t", "reply_to": "r@postroom.test", "headers": {"X-Run": "1"},
        "profile": "QA alerts", "priority": "high", "send_at": "2030-01-01T00:00:00Z",
    },
    ("POST", "/api/v1/messages/bulk"): {
        "action": "retry", "status": "failed", "profile": "QA alerts", "process": "nightly",
        "since": "2030-01-01T00:00:00Z", "until": "2031-01-01T00:00:00Z", "q": "bob",
        "dry_run": True,
    },
    ("POST", "/api/v1/actions"): {
        "process": "nightly", "to": ["bob@postroom.test"], "subject": "s", "text": "t",
        "choices": ["approve", "reject"], "expires_in_s": 3600, "context": {"k": "v"},
        "webhook_url": "https://hooks.example.com/x",
    },
    ("POST", "/api/v1/events"): {"event": "run.failed", "process": "nightly",
                                 "data": {"status": "failed"}, "idempotency_key": "k1"},
    ("POST", "/api/v1/templates"): _TEMPLATE,
    ("POST", "/api/v1/templates/preview"): _TEMPLATE,
    ("PUT", "/api/v1/templates/{name}"): {k: v for k, v in _TEMPLATE.items() if k != "name"},
    ("POST", "/api/v1/templates/{name}/preview"): {"data": {"who": "x"}},
    ("POST", "/api/v1/subscriptions"): _SUBSCRIPTION,
    ("PUT", "/api/v1/subscriptions/{id}"): _SUBSCRIPTION,
    ("POST", "/api/v1/apikeys"): {"name": "robot", "role": "sender", "processes": ["nightly"],
                                  "profiles": ["QA alerts"]},
    ("POST", "/api/v1/inbound/webhooks"): {"url": "https://hooks.example.com/in", "name": "h",
                                           "profile": "QA alerts", "secret": "s"},
}  # fmt: skip


def _leaves(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from _leaves(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield prefix + (i,)
            yield from _leaves(value, prefix + (i,))


def _replaced(body: dict[str, Any], where: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node: Any = out
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = value
    return out


def _concrete(template: str) -> str:
    """The path of a route template, naming the resources the tests seed."""
    if template.startswith(f"{API}/templates/"):
        template = template.replace("{name}", "t1")
    for key, value in PATH_VALUES.items():
        template = template.replace("{" + key + "}", value)
    return template


def test_validation_errors_never_quote_submitted_values(seeded: Postroom, make_client: Any) -> None:
    admin = make_client(
        seeded.accounts.create_api_key("ci", role="admin").key, raise_server_exceptions=False
    )
    assert admin.post(f"{API}/templates", json=_TEMPLATE).status_code == 201
    assert admin.post(f"{API}/subscriptions", json=_SUBSCRIPTION).status_code == 201
    reading = {(m, t) for m, t, p in body_operations(admin) if reads_json(admin, m, p)}
    assert len(reading) >= 18
    assert reading <= set(BASES), f"add a base body for {sorted(reading - set(BASES))}"
    variants = [SNEAKY, [SNEAKY], SNEAKY + "\r\n", "x" + SNEAKY + "@", {"k": SNEAKY}]
    refused = 0
    crashed, echoed = [], []
    for (method, template), base in BASES.items():
        path = _concrete(template)
        for where in _leaves(base):
            for value in variants:
                r = admin.request(method, path, json=_replaced(base, where, value))
                if r.status_code >= 500:
                    crashed.append((method, template, where, value))
                if r.status_code in (400, 422):
                    refused += 1
                    if SNEAKY in r.text:
                        echoed.append((method, template, where, value, r.text))
    assert not crashed and not echoed
    assert refused > 200
