"""Slow clients against a real `postroom serve`: 200 connections trickling a request head
from one loopback address are capped and then cut, and so is a kept-alive connection
trickling its second head, while /healthz keeps answering."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

import httpx

from postroom import Postroom
from tests.integration.serve_procs import env_for, serving

COUNT = 200
CAP = 50
HEAD_TIMEOUT_S = 3.0
SLOW_ADDRESS = "127.0.0.2"  # the tricklers; /healthz is asked from 127.0.0.1


async def _trickle(host: str, port: int, stop_at: float) -> float | None:
    """Open a connection and send a head one line at a time; when the server closed it,
    seconds after connecting (None: still open at ``stop_at``)."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(SLOW_ADDRESS, 0))
    except OSError:
        return 0.0
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        i = 0
        while time.monotonic() < stop_at:
            try:
                data = await asyncio.wait_for(reader.read(1024), timeout=0.5)
            except TimeoutError:
                writer.write(b"X-Slow-%d: 1\r\n" % i)
                i += 1
                continue
            if not data:
                return time.monotonic() - started
        return None
    except (ConnectionError, OSError):
        return time.monotonic() - started
    finally:
        writer.close()


async def _second_head_trickles(host: str, port: int, stop_at: float) -> float | None:
    """One full request on a kept-alive connection, then the next head one line at a time;
    when the server closed it, seconds after the first response (None: still open)."""
    reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.3", 0))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")  # the response head; the body is small
        answered = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        i = 0
        while time.monotonic() < stop_at:
            try:
                data = await asyncio.wait_for(reader.read(1024), timeout=0.5)
            except TimeoutError:
                writer.write(b"X-Slow-%d: 1\r\n" % i)
                i += 1
                continue
            if not data:
                return time.monotonic() - answered
        return None
    except (ConnectionError, OSError):
        return time.monotonic() - answered
    finally:
        writer.close()


async def _health(base: str, stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        while not stop.is_set():
            started = time.monotonic()
            response = await client.get("/healthz")
            assert response.status_code == 200
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.25)
    return latencies


async def _attack(base: str) -> tuple[list[float | None], float | None, list[float]]:
    port = int(base.rsplit(":", 1)[1])
    stop_at = time.monotonic() + HEAD_TIMEOUT_S + 12  # bounded: the test ends regardless
    stop = asyncio.Event()
    health = asyncio.create_task(_health(base, stop))
    kept_alive = asyncio.create_task(_second_head_trickles("127.0.0.1", port, stop_at))
    closed = await asyncio.gather(*(_trickle("127.0.0.1", port, stop_at) for _ in range(COUNT)))
    stop.set()
    return list(closed), await kept_alive, await health


def test_trickling_clients_are_capped_and_cut_while_health_answers(
    app_factory: Callable[..., Postroom],
) -> None:
    app = app_factory("sqlite")
    env = env_for(
        app,
        POSTROOM_HEADER_TIMEOUT_S=str(HEAD_TIMEOUT_S),
        POSTROOM_MAX_CONNECTIONS_PER_CLIENT=str(CAP),
    )
    with serving(env) as (base,):
        closed, kept_alive, latencies = asyncio.run(_attack(base))
        # the server is fine afterwards
        assert httpx.get(base + "/healthz", timeout=10).status_code == 200
    still_open = [c for c in closed if c is None]
    assert not still_open, f"{len(still_open)} of {COUNT} trickling connections stayed open"
    at_once = [c for c in closed if c is not None and c < HEAD_TIMEOUT_S - 0.5]
    cut = [c for c in closed if c is not None and c >= HEAD_TIMEOUT_S - 0.5]
    assert len(at_once) >= COUNT - CAP, "connections past the per-address cap were kept"
    assert max(cut, default=0) < HEAD_TIMEOUT_S + 8, max(cut)
    assert latencies and max(latencies) < 5, latencies
    # a kept-alive connection's next head has the same time limit
    assert kept_alive is not None and kept_alive < HEAD_TIMEOUT_S + 8, kept_alive
    print(
        f"\n{len(at_once)} refused at once, {len(cut)} cut after "
        f"{min(cut, default=0):.1f}-{max(cut, default=0):.1f} s; /healthz answered "
        f"{len(latencies)} times meanwhile, median {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms"
    )
