"""The TCP step of httpcore network backends that connect only to checked addresses.

Shared by :mod:`postroom.oauth2.http` (token endpoints) and :mod:`postroom.profiles.detect`
(autoconfig documents): each finds the allowed addresses its own way, then connects here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpcore

__all__ = ["connect_first_tcp"]


async def connect_first_tcp(
    inner: httpcore.AsyncNetworkBackend,
    addresses: Iterable[str],
    port: int,
    *,
    timeout: float | None,
    local_address: str | None = None,
    socket_options: Iterable[Any] | None = None,
) -> httpcore.AsyncNetworkStream:
    """A connection to the first of ``addresses`` that answers on ``port``; when none does,
    the last one's ConnectError or ConnectTimeout (httpx maps those for its callers)."""
    last: Exception | None = None
    for address in addresses:
        try:
            return await inner.connect_tcp(
                address,
                port,
                timeout=timeout,
                local_address=local_address,
                socket_options=socket_options,
            )
        except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
            last = exc
    assert last is not None
    raise last
