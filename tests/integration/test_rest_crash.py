"""A `postroom serve` killed (SIGKILL) while 16 clients post messages loses nothing it
answered 202: the answer comes only after the request's own (group) commit (issue 20)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import httpx
from sqlalchemy import select

from postroom import Postroom
from postroom.db.tables import OutboxMessage
from tests.conftest import basic_profile
from tests.integration.serve_procs import EXE, _wait_ready, env_for
from tests.integration.smtp_fakes import free_port


def test_serve_killed_mid_load_keeps_every_message_it_answered_202(app: Postroom) -> None:
    app.profiles.create(basic_profile("alerts", host="127.0.0.1", port=free_port()))
    app.set_default("alerts")
    key = app.accounts.create_api_key("mailer", role="sender").key
    port = free_port()
    proc = subprocess.Popen(
        [EXE, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env_for(app), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    accepted: list[int] = []
    answered_other = 0
    try:
        _wait_ready(proc, base, time.monotonic() + 120)

        async def client(c: httpx.AsyncClient, k: int, stop: float) -> None:
            nonlocal answered_other
            i = 0
            while time.monotonic() < stop:
                i += 1
                body = {"to": [f"u{k}-{i}@example.com"], "subject": "s", "text": "t"}
                try:
                    r = await c.post("/api/v1/messages", json=body)
                except httpx.HTTPError:
                    return  # the server died before answering: nothing was promised
                if r.status_code == 202:
                    accepted.append(r.json()["id"])
                else:
                    answered_other += 1

        async def load() -> None:
            headers = {"Authorization": f"Bearer {key}"}
            limits = httpx.Limits(max_connections=16)
            async with httpx.AsyncClient(
                base_url=base, headers=headers, timeout=20, limits=limits
            ) as c:
                stop = time.monotonic() + 15
                tasks = [asyncio.ensure_future(client(c, k, stop)) for k in range(16)]
                # kill while requests are in flight, once some were answered
                deadline = time.monotonic() + 10
                while len(accepted) < 30 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                os.kill(proc.pid, signal.SIGKILL)
                await asyncio.gather(*tasks)

        asyncio.run(load())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
    assert len(accepted) >= 30 and answered_other == 0
    assert len(set(accepted)) == len(accepted)
    with app.sessions() as s:
        found = set(s.scalars(select(OutboxMessage.id).where(OutboxMessage.id.in_(accepted))))
    assert found == set(accepted), f"lost after a crash: {sorted(set(accepted) - found)}"
