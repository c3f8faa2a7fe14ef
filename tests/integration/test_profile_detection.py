"""Settings detection from an address (issue 22 item 6): built-in provider data, the domain's
autoconfig document, RFC 6186 SRV records and MX hosts, against a real DNS server and a real
HTTP server on loopback (tests.harness.detection); every name resolves to 127.0.0.x."""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from postroom import Postroom
from postroom.api import create_app
from postroom.cli import cli
from postroom.errors import ValidationError
from postroom.net.dns import DnsServer, parse_dns_servers
from postroom.net.policy import NetPolicy
from postroom.profiles.detect import detect, parse_autoconfig
from tests.harness.detection import (
    DOCUMENTS,
    DetectionServers,
    detection_servers,
    silent_udp_port,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def servers() -> Iterator[DetectionServers]:
    with detection_servers() as running:
        yield running


def run(servers: DetectionServers, address: str, policy: NetPolicy | None = None) -> Any:
    return asyncio.run(
        detect(
            address,
            policy=policy or NetPolicy.from_strings(),
            dns_servers=parse_dns_servers(servers.dns.spec),
            timeout=2.0,
            http_port=servers.http_port,
            https_port=servers.https_port,
        )
    )


def test_a_known_provider_domain_is_answered_from_built_in_data_without_lookups(
    servers: DetectionServers,
) -> None:
    before = len(servers.dns.answers.queries)
    found = run(servers, "Ada@GoogleMail.com")
    assert [s.source for s in found.suggestions] == ["builtin"]
    best = found.suggestions[0]
    assert best.provider == "gmail"
    assert best.settings["smtp"] == {
        "host": "smtp.gmail.com",
        "port": 587,
        "security": "starttls",
        "auth": "basic",
        "username": "Ada@GoogleMail.com",
    }
    assert best.settings["imap"]["host"] == "imap.gmail.com"
    assert "app password" in best.note
    assert len(servers.dns.answers.queries) == before  # no DNS, no HTTP


def test_every_preset_with_a_mailbox_domain_is_detected(servers: DetectionServers) -> None:
    from postroom.profiles.providers import DOMAINS

    keys = set()
    for domain, key in DOMAINS.items():
        found = run(servers, f"someone@{domain}")
        assert found.suggestions[0].provider == key, domain
        keys.add(key)
    assert keys == {"gmail", "outlook", "yahoo", "icloud", "fastmail", "zoho"}


def test_the_autoconfig_document_of_the_domain_is_used(servers: DetectionServers) -> None:
    found = run(servers, "bob@auto.test")
    best = found.suggestions[0]
    assert best.source == "autoconfig"
    assert best.detail == (
        f"http://autoconfig.auto.test:{servers.http_port}/mail/config-v1.1.xml"
        "?emailaddress=bob@auto.test"
    )
    assert best.settings["smtp"] == {
        "host": "smtp.auto.test",
        "port": 587,
        "security": "starttls",
        "auth": "basic",
        "username": "bob@auto.test",
    }
    # the first IMAP server, not the POP3 one listed before it
    assert best.settings["imap"]["host"] == "imap.auto.test"
    assert best.settings["imap"]["security"] == "tls"
    assert "plain HTTP" in best.note
    # HTTPS was tried first (refused on loopback), then HTTP
    outcomes = [r for s, r in found.tried if s == "autoconfig"]
    assert outcomes[0].startswith("https://autoconfig.auto.test:")
    assert outcomes[-1].endswith(": found")
    requests = [r for r in servers.seen.requests if r[1] == "autoconfig.auto.test"]
    assert requests and all(address == "127.0.0.1" for address, _, _ in requests)


def test_the_well_known_location_on_the_domain_itself(servers: DetectionServers) -> None:
    found = run(servers, "carol@wellknown.test")
    best = found.suggestions[0]
    assert best.source == "autoconfig"
    assert "/.well-known/autoconfig/mail/config-v1.1.xml" in best.detail
    assert best.settings["smtp"]["username"] == "carol"  # %EMAILLOCALPART%


def test_srv_records_by_priority_and_weight(servers: DetectionServers) -> None:
    found = run(servers, "dave@srv.test")
    assert [s.source for s in found.suggestions] == ["srv"]
    best = found.suggestions[0]
    assert best.settings["smtp"] == {
        "host": "mail.srv.test",
        "port": 587,
        "security": "starttls",
        "auth": "basic",
        "username": "dave@srv.test",
    }
    assert best.settings["imap"]["host"] == "imap.srv.test"
    assert best.settings["imap"]["security"] == "tls"
    assert "_submission._tcp.srv.test" in best.detail
    asked = {q for q in servers.dns.answers.queries if q[0].endswith("srv.test")}
    assert ("_submission._tcp.srv.test", "SRV") in asked
    assert ("_imaps._tcp.srv.test", "SRV") in asked


def test_mx_hosts_of_a_known_provider(servers: DetectionServers) -> None:
    found = run(servers, "erin@mx.test")
    assert [s.source for s in found.suggestions] == ["mx"]
    best = found.suggestions[0]
    assert best.provider == "gmail"
    assert best.detail == "MX alt1.aspmx.l.google.com is Gmail / Google Workspace"
    assert best.settings["smtp"]["host"] == "smtp.gmail.com"


def test_nothing_found_says_what_was_tried(servers: DetectionServers) -> None:
    found = run(servers, "frank@nothing.test")
    assert found.suggestions == []
    sources = [s for s, _ in found.tried]
    assert sources[0] == "builtin"
    assert sources.count("autoconfig") == 4
    assert "srv" in sources and sources[-1] == "mx"


def test_the_network_policy_judges_the_autoconfig_host(servers: DetectionServers) -> None:
    # Without a deny entry the document on 127.0.0.2 is found (the test can fail) …
    found = run(servers, "gina@blocked.test")
    assert found.suggestions[0].source == "autoconfig"
    assert any(r[0] == "127.0.0.2" for r in servers.seen.requests)
    servers.seen.requests.clear()
    # … with 127.0.0.2 denied, nothing connects there.
    found = run(servers, "gina@blocked.test", NetPolicy.from_strings(deny="127.0.0.2/32"))
    assert found.suggestions == []
    assert not [r for r in servers.seen.requests if r[1] == "autoconfig.blocked.test"]
    assert any("blocked by the network policy" in r for s, r in found.tried if s == "autoconfig")


def test_a_document_with_entities_is_not_used(servers: DetectionServers) -> None:
    found = run(servers, "hal@entity.test")
    assert found.suggestions == []
    assert any("not a usable autoconfig document" in r for _, r in found.tried)


def test_a_silent_resolver_is_given_up_quickly() -> None:
    sock, port = silent_udp_port()
    try:
        started = time.monotonic()
        found = asyncio.run(
            detect(
                "ivy@silent.test",
                policy=NetPolicy.from_strings(),
                dns_servers=[DnsServer("127.0.0.1", port)],
                timeout=0.2,
                total_timeout=1.0,
                http_port=1,
                https_port=1,
            )
        )
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    assert elapsed < 2.0
    assert found.suggestions == []
    assert found.tried[-1] == ("timeout", "detection stopped after 1 s")


@pytest.mark.parametrize(
    "address",
    ["", "   ", "no-at-sign", "@example.com", "a@", "a@localhost", "a b@example.com", "a@ex..com"],
)
def test_malformed_addresses_are_a_field_error(address: str) -> None:
    with pytest.raises(ValidationError) as caught:
        asyncio.run(detect(address, policy=NetPolicy.from_strings(), dns_servers=[]))
    assert caught.value.field == "address"


def test_parse_autoconfig_keeps_only_complete_servers() -> None:
    document = DOCUMENTS[("autoconfig.auto.test", "/mail/config-v1.1.xml")].encode()
    parsed = parse_autoconfig(document, "x@auto.test", "x", "auto.test")
    assert parsed is not None and parsed["smtp"]["host"] == "smtp.auto.test"
    assert parse_autoconfig(b"<html></html>", "x@a.test", "x", "a.test") is None
    assert parse_autoconfig(b"not xml <", "x@a.test", "x", "a.test") is None
    no_smtp = document.replace(b'type="smtp"', b'type="exchange"')
    assert parse_autoconfig(no_smtp, "x@auto.test", "x", "auto.test") is None


def test_dns_server_setting_is_parsed() -> None:
    assert parse_dns_servers("127.0.0.1:5353, [::1]:53, 10.0.0.2") == [
        DnsServer("127.0.0.1", 5353),
        DnsServer("::1", 53),
        DnsServer("10.0.0.2", 53),
    ]
    for bad in ("dns.example.com", "127.0.0.1:x", "[::1]x", "127.0.0.1:70000"):
        with pytest.raises(ValueError):
            parse_dns_servers(bad)


# -- the surfaces: CLI, REST ---------------------------------------------------------------


def test_cli_detect(servers: DetectionServers, tmp_path: Path) -> None:
    env = {"POSTROOM_DATA_DIR": str(tmp_path / "data"), **servers.env()}
    runner = CliRunner()
    result = runner.invoke(cli, ["profile", "detect", "dave@srv.test", "--json"], env=env)
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["suggestions"][0]["source"] == "srv"
    assert body["suggestions"][0]["settings"]["smtp"]["host"] == "mail.srv.test"

    result = runner.invoke(cli, ["profile", "detect", "bob@auto.test"], env=env)
    assert result.exit_code == 0, result.output
    assert "Suggestion from autoconfig" in result.output
    assert "smtp.auto.test port 587 starttls" in result.output

    result = runner.invoke(cli, ["profile", "detect", "frank@nothing.test"], env=env)
    assert result.exit_code == 1
    assert "No settings found for nothing.test" in result.output

    result = runner.invoke(cli, ["profile", "detect", "not an address"], env=env)
    assert result.exit_code == 2
    assert "address:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "data" / "postroom.db").exists() or result.exit_code == 2


@pytest.fixture
def detecting_app(app_factory: Any, servers: DetectionServers, backend: str) -> Postroom:
    return app_factory(backend, **servers.settings())  # type: ignore[no-any-return]


def test_rest_detect(detecting_app: Postroom) -> None:
    key = detecting_app.accounts.create_api_key("ci", role="admin").key
    sender_key = detecting_app.accounts.create_api_key("mailer", role="sender").key
    before = detecting_app.profiles.list()
    with TestClient(create_app(detecting_app)) as client:
        admin = {"Authorization": f"Bearer {key}"}
        r = client.get(
            "/api/v1/profile-detection", params={"address": "erin@mx.test"}, headers=admin
        )
        assert r.status_code == 200, r.text
        assert r.json()["suggestions"][0]["source"] == "mx"
        assert r.json()["suggestions"][0]["provider"] == "gmail"

        r = client.get("/api/v1/profile-detection", params={"address": "a@"}, headers=admin)
        assert r.status_code == 422
        error = r.json()["error"]
        assert error["code"] == "validation_error"
        assert [e["field"] for e in error["errors"]] == ["address"]
        # every problem named, nothing of the input echoed back
        for bad in ("x@echo-me-not", "x@echo-me-not..com", "", "a" * 401 + "@x.com"):
            r = client.get("/api/v1/profile-detection", params={"address": bad}, headers=admin)
            assert r.status_code == 422, bad
            assert r.json()["error"]["field"] == "address"
            assert "echo-me-not" not in r.text and "aaaa" not in r.text

        r = client.get("/api/v1/profile-detection", params={"address": "x@mx.test"})
        assert r.status_code == 401
        r = client.get(
            "/api/v1/profile-detection",
            params={"address": "x@mx.test"},
            headers={"Authorization": f"Bearer {sender_key}"},
        )
        assert r.status_code == 403
    assert detecting_app.profiles.list() == before  # nothing saved


# -- the profile form (plain form posts, as without JavaScript) ---------------------------


def _csrf(html: str) -> str:
    import re

    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def test_the_profile_form_detects_fills_and_saves_nothing(
    app_factory: Any, servers: DetectionServers
) -> None:
    pr: Postroom = app_factory("sqlite", **servers.settings())
    pr.accounts.create_admin("ada", "ada-password-123")
    with TestClient(create_app(pr), follow_redirects=False) as client:
        token = _csrf(client.get("/login").text)
        signed_in = client.post(
            "/login", data={"csrf_token": token, "username": "ada", "password": "ada-password-123"}
        )
        assert signed_in.status_code == 303
        page = client.get("/settings/email/new")
        token = _csrf(page.text)
        assert 'value="detect"' in page.text
        form = {"csrf_token": token, "name": "Reports", "detect_address": "bob@auto.test"}
        r = client.post("/settings/email/new", data=form | {"action": "detect"})
        assert r.status_code == 200, r.text
        assert 'id="detect-result"' in r.text
        assert "Filled in from <strong>autoconfig</strong>" in r.text
        assert 'name="smtp.host" value="smtp.auto.test"' in r.text
        assert 'name="imap.host" value="imap.auto.test"' in r.text
        assert 'name="sender.from_address" value="bob@auto.test"' in r.text
        assert 'name="name" value="Reports"' in r.text  # what was typed stays

        r = client.post(
            "/settings/email/new", data=form | {"action": "detect", "detect_address": "bob@"}
        )
        assert r.status_code == 422
        assert 'id="f-detect-address"' in r.text and 'aria-invalid="true"' in r.text
        assert "is not a full domain name" in r.text or "Write one address" in r.text
    assert pr.profiles.list() == []
