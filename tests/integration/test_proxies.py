"""SMTP, IMAP and delivery through a proxy (issue 22 item 7): real Dante (SOCKS5) and
tinyproxy (HTTP CONNECT) on loopback high ports (tests.harness.proxies), with TLS and
STARTTLS through them to the harness's Postfix and Dovecot; the `proxy` step's own codes."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from postroom import Postroom
from postroom.diagnostics.probe import run_test
from postroom.diagnostics.steps import Diagnosis
from postroom.errors import ConfigurationError
from postroom.net.policy import NetPolicy
from postroom.net.proxy_spec import ProxySpec, parse_proxy_url
from postroom.outbox.worker import Worker
from postroom.profiles.schemas import parse_spec
from postroom.smtp.client import open_smtp
from tests.conftest import require_service
from tests.harness import proxies as proxy_harness
from tests.harness.mailservers import MailServers
from tests.integration.test_real_mail_servers import BOB, spec_data

pytestmark = pytest.mark.mailservers


@pytest.fixture(scope="module")
def proxies() -> Iterator[proxy_harness.Proxies]:
    missing = proxy_harness.available()
    if missing:
        require_service("proxies (Dante, tinyproxy)", missing)
    with proxy_harness.proxies() as running:
        yield running


def policy_with(proxy: ProxySpec, **kw: str) -> NetPolicy:
    return dataclasses.replace(NetPolicy.from_strings(**kw), proxy=proxy)


def diagnose(
    servers: MailServers, policy: NetPolicy, port: str = "submission", **kw: Any
) -> Diagnosis:
    return asyncio.run(run_test(parse_spec(spec_data(servers, port)), policy=policy, **kw))


def code(d: Diagnosis) -> str | None:
    return d.error.code if d.error else None


def socks(p: proxy_harness.Proxies) -> ProxySpec:
    return ProxySpec("socks5", "127.0.0.1", p.ports["socks"])


def http(p: proxy_harness.Proxies, name: str = "http", **auth: str) -> ProxySpec:
    return ProxySpec("http", "127.0.0.1", p.ports[name], **auth)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["socks", "http"])
@pytest.mark.parametrize("port", ["submission", "submissions"])
def test_smtp_starttls_and_tls_through_the_proxy(
    mail_servers: MailServers, proxies: proxy_harness.Proxies, kind: str, port: str
) -> None:
    proxy = socks(proxies) if kind == "socks" else http(proxies)
    d = diagnose(mail_servers, policy_with(proxy), port)
    assert d.ok, d.error
    names = [s.name for s in d.steps]
    assert names[0] == "proxy" and "resolve" not in names and "connect" not in names
    assert "tls" in names and (port == "submissions" or "starttls" in names)
    assert f"port {mail_servers.ports[port]} through the {proxy.shown}" in d.steps[0].detail
    assert any("certificate for localhost" in s.detail for s in d.steps if s.name == "tls")


def test_the_tunnel_really_goes_through_the_proxy(
    mail_servers: MailServers, proxies: proxy_harness.Proxies
) -> None:
    target = mail_servers.ports["submission"]
    d = diagnose(mail_servers, policy_with(http(proxies)))
    assert d.ok, d.error
    assert f"CONNECT 127.0.0.1:{target}" in proxies.logs["http"].read_text()
    # and a proxy that is not there fails the test: there is no direct way around it
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    try:
        gone = ProxySpec("socks5", "127.0.0.1", holder.getsockname()[1])
        d = diagnose(mail_servers, policy_with(gone))
    finally:
        holder.close()
    assert code(d) == "proxy_refused"
    assert [s.name for s in d.steps] == ["proxy"] and not d.steps[0].ok
    assert "POSTROOM_PROXY" in d.error.hint  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["socks", "http"])
@pytest.mark.parametrize("port", ["imaps", "imap"])
def test_imap_tls_and_starttls_through_the_proxy(
    mail_servers: MailServers, proxies: proxy_harness.Proxies, kind: str, port: str
) -> None:
    proxy = socks(proxies) if kind == "socks" else http(proxies)
    data = spec_data(mail_servers)
    data["imap"]["port"] = mail_servers.ports[port]
    data["imap"]["security"] = "tls" if port == "imaps" else "starttls"
    d = asyncio.run(run_test(parse_spec(data), policy=policy_with(proxy), smtp=False, imap=True))
    assert d.ok, d.error
    names = [s.name for s in d.steps]
    assert names[0] == "proxy" and "resolve" not in names
    assert "tls" in names


def test_http_proxy_sign_in(mail_servers: MailServers, proxies: proxy_harness.Proxies) -> None:
    good = http(
        proxies,
        "http_auth",
        username=proxy_harness.PROXY_USER,
        password=proxy_harness.PROXY_PASSWORD,
    )
    d = diagnose(mail_servers, policy_with(good))
    assert d.ok, d.error

    wrong = dataclasses.replace(good, password="not-the-password")
    d = diagnose(mail_servers, policy_with(wrong))
    assert code(d) == "proxy_auth_failed", d.error
    assert "not-the-password" not in d.model_dump_json()

    d = diagnose(mail_servers, policy_with(http(proxies, "http_auth")))
    assert code(d) == "proxy_auth_failed"
    assert proxy_harness.PROXY_PASSWORD not in d.model_dump_json()


def test_a_silent_proxy_is_a_proxy_timeout(mail_servers: MailServers) -> None:
    # accepts TCP (the kernel's backlog) and never answers the SOCKS greeting
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        data = spec_data(mail_servers)
        data["smtp"]["connect_timeout_s"] = 0.5
        proxy = ProxySpec("socks5", "127.0.0.1", silent.getsockname()[1])
        d = asyncio.run(run_test(parse_spec(data), policy=policy_with(proxy)))
    finally:
        silent.close()
    assert code(d) == "proxy_timeout"
    assert d.steps[0].name == "proxy" and d.steps[0].ms < 3000


def test_the_network_policy_judges_the_proxy_and_a_literal_target(
    mail_servers: MailServers, proxies: proxy_harness.Proxies
) -> None:
    log = proxies.logs["http"]
    before = log.read_text()
    d = diagnose(mail_servers, policy_with(http(proxies), deny="127.0.0.1/32"))
    assert code(d) == "blocked_by_policy"
    data = spec_data(mail_servers)
    data["smtp"]["host"] = "127.0.0.9"  # judged here although the proxy would connect
    d = asyncio.run(
        run_test(parse_spec(data), policy=policy_with(http(proxies), deny="127.0.0.9/32"))
    )
    assert code(d) == "blocked_by_policy"
    assert "127.0.0.9" in d.error.message  # type: ignore[union-attr]
    assert log.read_text() == before  # the proxy saw neither


def test_delivery_and_the_outbox_through_the_proxy(
    app_factory: Any, mail_servers: MailServers, proxies: proxy_harness.Proxies
) -> None:
    app: Postroom = app_factory("sqlite", proxy=f"socks5://127.0.0.1:{proxies.ports['socks']}")
    assert app.policy.proxy == socks(proxies)
    app.profiles.create(spec_data(mail_servers))
    subject = f"Through the proxy {uuid.uuid4().hex[:8]}"
    id = app.send({"to": [BOB], "subject": subject, "text": "via SOCKS5"}, profile="QA alerts")
    asyncio.run(Worker(app, poll_s=0.05).run(drain=True))
    assert app.outbox.get(id).status == "sent", app.outbox.get(id).last_error
    mail_servers.wait_for_mail(BOB, lambda m: m["Subject"] == subject)

    async def session_through(proxy: ProxySpec) -> None:
        spec = parse_spec(spec_data(mail_servers))
        client = await open_smtp(spec.smtp, policy=policy_with(proxy))
        client.close()

    asyncio.run(session_through(http(proxies)))


def test_the_proxy_setting_is_checked(app_factory: Any) -> None:
    assert parse_proxy_url("") is None
    assert parse_proxy_url("socks5://u%40x@proxy.example:1080", "pw") == ProxySpec(
        "socks5", "proxy.example", 1080, "u@x", "pw"
    )
    assert parse_proxy_url("http://[::1]:3128/") == ProxySpec("http", "::1", 3128)
    for bad, words in (
        ("ftp://proxy.example:21", "unknown proxy type"),
        ("socks4://proxy.example:1080", "unknown proxy type"),
        ("http://proxy.example:3128/path", "no path"),
        ("http://proxy.example:3128?x=1", "no path"),
        ("http://u:pw@proxy.example:3128", "POSTROOM_PROXY_PASSWORD"),
        ("http://proxy.example", "needs a port"),
        ("http://proxy.example:99999", "port"),
        ("http://proxy example:1", "spaces"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_proxy_url(bad)
    with pytest.raises(ConfigurationError, match="POSTROOM_PROXY: unknown proxy type"):
        app_factory("sqlite", proxy="gopher://x:70")
    assert "pw" not in repr(ProxySpec("http", "h", 1, "u", "pw"))


@pytest.mark.parametrize("kind", ["socks", "http"])
def test_oauth2_token_calls_through_the_proxy(
    proxies: proxy_harness.Proxies, harness_certs: Any, kind: str
) -> None:
    """HTTPS to a token endpoint through the tunnel; the certificate is checked against the
    endpoint's name (localhost), which the proxy resolves."""
    import ssl

    from postroom.oauth2.http import EndpointUnreachable, post_form
    from tests.harness.oauth2server import LocalAuthServer

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(harness_certs.valid.cert, harness_certs.valid.key)
    server = LocalAuthServer(url_host="localhost", ssl_context=context).start()
    proxy = socks(proxies) if kind == "socks" else http(proxies)
    try:
        status, body = asyncio.run(
            post_form(
                f"{server.url}/token",
                {"grant_type": "client_credentials", "client_id": "nobody"},
                policy=policy_with(proxy),
                ssl_context=harness_certs.client_context(),
                timeout=5,
            )
        )
        assert status in (400, 401) and b"invalid_client" in body
        assert server.token_calls  # the endpoint was reached
        if kind == "http":
            assert f"CONNECT localhost:{server.port}" in proxies.logs["http"].read_text()
        # the certificate is verified through the tunnel: without the test CA it fails
        with pytest.raises(EndpointUnreachable, match="TLS"):
            asyncio.run(
                post_form(
                    f"{server.url}/token",
                    {"grant_type": "client_credentials"},
                    policy=policy_with(proxy),
                    ssl_context=ssl.create_default_context(),
                    timeout=5,
                )
            )
    finally:
        server.stop()
