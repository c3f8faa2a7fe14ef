"""Which proxy postroom's mail connections go through (pure): ``socks5`` or ``http`` CONNECT.

``POSTROOM_PROXY`` is ``socks5://[user@]host:port`` or ``http://[user@]host:port``;
``POSTROOM_PROXY_PASSWORD`` the password (kept out of the URL, so it appears in no listing
of the URL). No path, query or fragment: a proxy is an address, not a page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

__all__ = ["PROXY_TYPES", "ProxySpec", "parse_proxy_url"]

PROXY_TYPES = ("socks5", "http")


@dataclass(frozen=True)
class ProxySpec:
    type: Literal["socks5", "http"]
    host: str
    port: int
    username: str | None = None
    #: never shown: not in repr, messages or diagnoses
    password: str | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.type} proxy {host}:{self.port}"


def parse_proxy_url(url: str, password: str = "") -> ProxySpec | None:
    """None for an empty ``url``; ValueError saying what to change otherwise."""
    text = url.strip()
    if not text:
        return None
    if any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError("the proxy URL contains spaces or control characters")
    parts = urlsplit(text)
    kind = parts.scheme.lower()
    if kind not in PROXY_TYPES:
        raise ValueError(
            f"unknown proxy type {parts.scheme!r}: write socks5://host:port or http://host:port"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a proxy URL has no path, query or fragment: write type://host:port")
    if parts.password is not None:
        raise ValueError("put the proxy password in POSTROOM_PROXY_PASSWORD, not in the URL")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the proxy port must be a number between 1 and 65535") from None
    host = parts.hostname or ""
    if not host:
        raise ValueError("the proxy URL names no host")
    if port is None:
        raise ValueError("the proxy URL needs a port, like socks5://proxy.example:1080")
    username = unquote(parts.username) if parts.username is not None else None
    if password and username is None:
        raise ValueError("a proxy password needs a user name in the URL (type://user@host:port)")
    return ProxySpec(kind, host, port, username, password or None)  # type: ignore[arg-type]
