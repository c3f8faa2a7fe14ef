"""The IMAP diagnosis quotes the server's refusal with the password taken out where it can
be the password, and nowhere else (an in-process server scripts the refusal)."""

from __future__ import annotations

import pytest

from postroom.diagnostics.imap_probe import probe_imap
from postroom.net.policy import NetPolicy
from postroom.profiles.schemas import ImapSettings
from tests.integration.fake_servers import scripted_imap

MASK = "********"  # what postroom shows in place of a password


def _settings(port: int, password: str) -> ImapSettings:
    return ImapSettings.model_validate(
        {"host": "127.0.0.1", "port": port, "security": "none", "auth": "basic",
         "username": "alice", "password": password, "connect_timeout_s": 5}
    )  # fmt: skip


async def _refusal(reply: bytes, password: str) -> tuple[str, str]:
    with scripted_imap(replies={"LOGIN": reply}) as srv:
        d = await probe_imap(_settings(srv.port, password), policy=NetPolicy(), cap_s=15)
    assert d.error is not None and d.error.code == "auth_failed", d
    return d.error.message, d.model_dump_json()


async def test_one_letter_password_leaves_the_server_message_readable() -> None:
    reply = b"{tag} NO [AUTHENTICATIONFAILED] Authentication failed: bad password a\r\n"
    message, everything = await _refusal(reply, "a")
    assert "[AUTHENTICATIONFAILED] Authentication failed: bad password " + MASK in message
    assert "password a" not in everything


@pytest.mark.parametrize("password", ["hunter2-long-secret", 'sh"rt'])
async def test_an_echoed_password_is_redacted_whole(password: str) -> None:
    quoted = password.replace("\\", "\\\\").replace('"', '\\"').encode()
    reply = b'{tag} NO [AUTHENTICATIONFAILED] LOGIN alice "' + quoted + b'" refused\r\n'
    message, everything = await _refusal(reply, password)
    assert "Authentication" not in message  # the server's own words, unchanged
    assert f'LOGIN alice "{MASK}" refused' in message
    assert password not in everything and quoted.decode() not in everything
