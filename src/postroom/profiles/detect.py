"""Suggest a profile's servers from an e-mail address; nothing is saved.

In order, stopping at built-in data (no network needed there):

1. ``builtin`` — the address's domain belongs to a known provider
   (:mod:`postroom.profiles.providers`).
2. ``autoconfig`` — the domain's Thunderbird autoconfig document,
   ``autoconfig.<domain>/mail/config-v1.1.xml`` then
   ``<domain>/.well-known/autoconfig/mail/config-v1.1.xml``, HTTPS first, then HTTP.
3. ``srv`` — RFC 6186 / RFC 8314 SRV records: ``_submissions._tcp``, ``_submission._tcp``,
   ``_imaps._tcp``, ``_imap._tcp``.
4. ``mx`` — the domain's MX hosts matched to a known provider (a custom domain at Google
   Workspace or Microsoft 365).

Every suggestion says where it came from; ``tried`` says what each step found. Every HTTP
connection goes to an address the network policy allows (names resolved once, through the
configured resolvers), and every lookup is bounded by ``timeout``; the whole detection by
``total_timeout``. An autoconfig document fetched over plain HTTP is marked so: anybody on
the path could have written it.
"""

from __future__ import annotations

import asyncio
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpcore
import httpx
import idna

from postroom.errors import FieldError, ValidationError
from postroom.net.dns import DnsFailed, DnsServer, query
from postroom.net.http_connect import connect_first_tcp
from postroom.net.policy import Allowed, NetPolicy, check
from postroom.profiles.providers import DOMAINS, Preset, preset_by_key, provider_for_mx

__all__ = [
    "Detection",
    "Suggestion",
    "detect",
    "parse_address",
    "parse_autoconfig",
]

_MAX_DOCUMENT = 64 * 1024
_SOCKET_TYPES = {"SSL": "tls", "STARTTLS": "starttls", "plain": "none"}


@dataclass(frozen=True)
class Suggestion:
    """Settings for the profile form: ``settings`` = {"smtp": {...}, "imap": {...}|None}."""

    source: str  # builtin | autoconfig | srv | mx
    detail: str
    settings: dict[str, dict[str, Any] | None]
    provider: str | None = None
    note: str | None = None

    def form_values(self) -> dict[str, str]:
        """Dotted form field names → text (what the profile form fills)."""
        values: dict[str, str] = {}
        for side in ("smtp", "imap"):
            server = self.settings.get(side)
            if not server:
                continue
            if side == "imap":
                values["imap.enabled"] = "1"
            for key, value in server.items():
                if value is not None:
                    values[f"{side}.{key}"] = str(value)
        return values

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "detail": self.detail,
            "provider": self.provider,
            "note": self.note,
            "settings": self.settings,
        }


@dataclass
class Detection:
    address: str
    domain: str
    suggestions: list[Suggestion] = field(default_factory=list)
    #: (source, what happened) for every step run, in order
    tried: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "domain": self.domain,
            "suggestions": [s.as_dict() for s in self.suggestions],
            "tried": [{"source": s, "result": r} for s, r in self.tried],
        }


def parse_address(address: object) -> tuple[str, str, str]:
    """``(address, local part, IDNA domain)``; ValidationError on field ``address``."""
    problem = None
    text = address.strip() if isinstance(address, str) else ""
    local, _, domain = text.rpartition("@")
    if not isinstance(address, str) or not text:
        problem = "Enter an e-mail address, like name@example.com."
    elif len(text) > 320 or any(c.isspace() or not c.isprintable() for c in text):
        problem = (
            "An e-mail address has no spaces or control characters and at most 320 characters."
        )
    elif not local or not domain or "@" in local and not local.startswith('"'):
        problem = "Write one address, like name@example.com."
    if problem is None:
        try:
            ascii_domain = idna.encode(domain.rstrip(".").lower(), uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            problem = "The part after @ is not a valid domain name (like example.com)."
        else:
            if "." not in ascii_domain or len(ascii_domain) > 253:
                problem = "The part after @ is not a full domain name (like example.com)."
    if problem is not None:
        raise ValidationError(FieldError("address", problem))
    return text, local, ascii_domain


def _builtin(preset: Preset, address: str) -> dict[str, dict[str, Any] | None]:
    username = preset.username or address
    smtp = {
        "host": preset.smtp_host,
        "port": preset.smtp_port,
        "security": preset.smtp_security,
        "auth": "basic",
        "username": username,
    }
    imap = None
    if preset.imap_host and preset.imap_port and preset.imap_security:
        imap = {
            "host": preset.imap_host,
            "port": preset.imap_port,
            "security": preset.imap_security,
            "auth": "basic",
            "username": username,
        }
    return {"smtp": smtp, "imap": imap}


def _expand(template: str, address: str, local: str, domain: str) -> str:
    return (
        template.replace("%EMAILADDRESS%", address)
        .replace("%EMAILLOCALPART%", local)
        .replace("%EMAILDOMAIN%", domain)
    )


def parse_autoconfig(
    document: bytes, address: str, local: str, domain: str
) -> dict[str, dict[str, Any] | None] | None:
    """The first SMTP and IMAP servers of a Thunderbird autoconfig document (pure).

    None when the document is not one, names no SMTP server, or declares a DTD/entities
    (never expanded: a document that needs them is not worth the risk).
    """
    if len(document) > _MAX_DOCUMENT or b"<!DOCTYPE" in document or b"<!ENTITY" in document:
        return None
    try:
        root = ET.fromstring(document)
    except ET.ParseError:
        return None
    provider = root.find("emailProvider") if root.tag == "clientConfig" else None
    if provider is None:
        return None

    def server(element: ET.Element | None) -> dict[str, Any] | None:
        if element is None:
            return None
        host = (element.findtext("hostname") or "").strip()
        port_text = (element.findtext("port") or "").strip()
        security = _SOCKET_TYPES.get((element.findtext("socketType") or "").strip())
        if not host or not port_text.isdigit() or security is None:
            return None
        port = int(port_text)
        if not 1 <= port <= 65535 or len(host) > 253:
            return None
        username = (element.findtext("username") or "").strip()
        auth_values = [(a.text or "").strip() for a in element.findall("authentication")]
        auth = "oauth2" if auth_values and auth_values[0] == "OAuth2" else "basic"
        if auth_values and all(a == "none" for a in auth_values):
            auth = "none"
        return {
            "host": _expand(host, address, local, domain),
            "port": port,
            "security": security,
            "auth": auth,
            "username": _expand(username, address, local, domain)[:320] or None
            if auth != "none"
            else None,
        }

    smtp = next(
        (
            s
            for s in (server(e) for e in provider.findall("outgoingServer[@type='smtp']"))
            if s is not None
        ),
        None,
    )
    imap = next(
        (
            s
            for s in (server(e) for e in provider.findall("incomingServer[@type='imap']"))
            if s is not None
        ),
        None,
    )
    if smtp is None:
        return None
    return {"smtp": smtp, "imap": imap}


def _best_srv(records: list[Any]) -> tuple[str, int] | None:
    """Lowest priority, then highest weight; None when the target is "." (no service)."""
    if not records:
        return None
    best = sorted(records, key=lambda r: (r.priority, -r.weight))[0]
    target = str(best.target).rstrip(".")
    if not target or not 1 <= int(best.port) <= 65535:
        return None
    return target.lower(), int(best.port)


class _Lookup:
    """The I/O side of one detection: DNS through ``servers``, HTTP through ``policy``."""

    def __init__(self, policy: NetPolicy, servers: list[DnsServer], timeout: float) -> None:
        self.policy = policy
        self.servers = servers
        self.timeout = timeout

    async def records(self, name: str, rdtype: str) -> list[Any]:
        return await query(name, rdtype, servers=self.servers, timeout=self.timeout)

    async def addresses(self, host: str, port: int) -> list[str]:
        """Addresses of ``host`` the policy allows (A, then AAAA); ConnectionError if none."""
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                found += [r.address for r in await self.records(host, rdtype)]
            except DnsFailed:
                continue
        if not found:
            raise ConnectionError(f"{host} has no address")
        allowed = []
        reasons = []
        for address in found:
            decision = check(self.policy, address, port)
            if isinstance(decision, Allowed):
                allowed.append(decision.address)
            else:
                reasons.append(decision.reason)
        if not allowed:
            raise ConnectionError(f"{host} is blocked by the network policy. {' '.join(reasons)}")
        return allowed


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self, lookup: _Lookup) -> None:
        self._lookup = lookup
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._lookup.addresses(host, port)
        except ConnectionError as exc:
            raise httpcore.ConnectError(str(exc)) from None
        return await connect_first_tcp(
            self._inner,
            addresses,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("no UNIX sockets here")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _transport(lookup: _Lookup, context: ssl.SSLContext) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(verify=context, trust_env=False)
    # as in oauth2/http.py: httpx takes no network backend, so its pool is rebuilt with ours
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=context, network_backend=_Backend(lookup), max_keepalive_connections=0
    )
    return transport


async def _fetch(client: httpx.AsyncClient, url: str) -> tuple[bytes | None, str]:
    """(document, what happened); the document only for a 200 of at most 64 KiB."""
    try:
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                return None, f"{url}: HTTP {response.status_code}"
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _MAX_DOCUMENT:
                    return None, f"{url}: larger than 64 KiB"
            return body, f"{url}: found"
    except httpx.TimeoutException:
        return None, f"{url}: no answer in time"
    except httpx.HTTPError as exc:
        reason = str(exc).split("\n")[0][:200] or type(exc).__name__
        return None, f"{url}: {reason}"


async def _autoconfig(
    detection: Detection,
    lookup: _Lookup,
    local: str,
    *,
    http_port: int,
    https_port: int,
    ssl_context: ssl.SSLContext,
) -> None:
    domain, address = detection.domain, detection.address
    query_part = f"?emailaddress={quote(address, safe='@')}"
    paths = [
        (f"autoconfig.{domain}", f"/mail/config-v1.1.xml{query_part}"),
        (domain, "/.well-known/autoconfig/mail/config-v1.1.xml"),
    ]
    urls = [(f"https://{h}:{https_port}{p}", True) for h, p in paths] + [
        (f"http://{h}:{http_port}{p}", False) for h, p in paths
    ]
    transport = _transport(lookup, ssl_context)
    async with httpx.AsyncClient(
        transport=transport, timeout=lookup.timeout, follow_redirects=False
    ) as client:
        for url, secure in urls:
            document, outcome = await _fetch(client, url)
            detection.tried.append(("autoconfig", outcome))
            if document is None:
                continue
            settings = parse_autoconfig(document, address, local, domain)
            if settings is None:
                detection.tried[-1] = ("autoconfig", f"{url}: not a usable autoconfig document")
                continue
            note = None if secure else "Fetched over plain HTTP: check these servers before saving."
            detection.suggestions.append(Suggestion("autoconfig", url, settings, note=note))
            return


async def _srv(detection: Detection, lookup: _Lookup, address: str) -> None:
    domain = detection.domain
    found: dict[str, tuple[str, int, str, str]] = {}
    for side, service, security in (
        ("smtp", "_submissions._tcp", "tls"),
        ("smtp", "_submission._tcp", "starttls"),
        ("imap", "_imaps._tcp", "tls"),
        ("imap", "_imap._tcp", "starttls"),
    ):
        if side in found:
            continue
        name = f"{service}.{domain}"
        try:
            best = _best_srv(await lookup.records(name, "SRV"))
        except DnsFailed as exc:
            detection.tried.append(("srv", str(exc)))
            continue
        if best is None:
            detection.tried.append(("srv", f"{name}: no record"))
            continue
        detection.tried.append(("srv", f"{name}: {best[0]} port {best[1]}"))
        found[side] = (best[0], best[1], security, name)
    if "smtp" not in found:
        return
    settings: dict[str, dict[str, Any] | None] = {"smtp": None, "imap": None}
    for side, (host, port, security, _name) in found.items():
        settings[side] = {
            "host": host,
            "port": port,
            "security": security,
            "auth": "basic",
            "username": address,
        }
    detail = ", ".join(v[3] for v in found.values())
    detection.suggestions.append(Suggestion("srv", detail, settings))


async def _mx(detection: Detection, lookup: _Lookup, address: str) -> None:
    try:
        records = await lookup.records(detection.domain, "MX")
    except DnsFailed as exc:
        detection.tried.append(("mx", str(exc)))
        return
    hosts = [str(r.exchange).rstrip(".") for r in sorted(records, key=lambda r: r.preference)]
    for host in hosts:
        preset = provider_for_mx(host)
        if preset is not None:
            detection.tried.append(("mx", f"{host}: {preset.label}"))
            detection.suggestions.append(
                Suggestion(
                    "mx",
                    f"MX {host} is {preset.label}",
                    _builtin(preset, address),
                    provider=preset.key,
                    note=preset.signin,
                )
            )
            return
    shown = ", ".join(hosts[:5]) if hosts else "none"
    detection.tried.append(("mx", f"MX hosts: {shown}; no known provider"))


async def detect(
    address: object,
    *,
    policy: NetPolicy,
    dns_servers: list[DnsServer],
    timeout: float = 3.0,
    total_timeout: float = 15.0,
    http_port: int = 80,
    https_port: int = 443,
    ssl_context: ssl.SSLContext | None = None,
) -> Detection:
    """Detect settings for ``address``; ValidationError (field ``address``) for bad input."""
    text, local, domain = parse_address(address)
    detection = Detection(text, domain)
    key = DOMAINS.get(domain)
    preset = preset_by_key(key) if key else None
    if preset is not None:
        detection.tried.append(("builtin", f"{domain} is {preset.label}"))
        detection.suggestions.append(
            Suggestion(
                "builtin",
                f"{domain} is a {preset.label} domain",
                _builtin(preset, text),
                provider=preset.key,
                note=preset.signin,
            )
        )
        return detection
    detection.tried.append(("builtin", f"{domain} is not a known provider's domain"))
    lookup = _Lookup(policy, dns_servers, timeout)
    context = ssl_context or ssl.create_default_context()
    try:
        async with asyncio.timeout(total_timeout):
            await _autoconfig(
                detection,
                lookup,
                local,
                http_port=http_port,
                https_port=https_port,
                ssl_context=context,
            )
            await _srv(detection, lookup, text)
            await _mx(detection, lookup, text)
    except TimeoutError:
        detection.tried.append(("timeout", f"detection stopped after {total_timeout:g} s"))
    return detection
