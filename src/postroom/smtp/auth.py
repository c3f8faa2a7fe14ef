"""SMTP AUTH with a password: the best mechanism the server offers, tried once.

aiosmtplib's ``login()`` tries every offered mechanism in turn after a refusal, so one
wrong password became two failed logins on Postfix (PLAIN, LOGIN) and three on Exim
(CRAM-MD5, PLAIN, LOGIN): fail2ban bans and provider lockouts come sooner. Here a refused
password is one failed login; another mechanism is tried only when the server says the
mechanism itself is unusable (:func:`postroom.smtp.replies.mechanism_unusable`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiosmtplib

from postroom.smtp.replies import mechanism_unusable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "PASSWORD_MECHANISMS",
    "LoginRefused",
    "NoPasswordMechanism",
    "choose_mechanisms",
    "login",
]

#: the mechanisms postroom can use with a password
PASSWORD_MECHANISMS = ("plain", "login", "cram-md5")


class NoPasswordMechanism(Exception):
    """The server offers no mechanism postroom can use with a password."""

    def __init__(self, offered: list[str]) -> None:
        self.offered = offered
        super().__init__(
            "The server offers no login mechanism postroom can use with a password: "
            + (" ".join(m.upper() for m in offered) or "none")
        )


class LoginRefused(Exception):
    """The server refused the login: its reply, and the mechanism that was used."""

    def __init__(self, code: int, message: str, mechanism: str) -> None:
        self.code = code
        self.message = message
        self.mechanism = mechanism
        super().__init__(f"{code} {message} (AUTH {mechanism.upper()})")


def choose_mechanisms(offered: list[str], *, encrypted: bool) -> list[str]:
    """The usable mechanisms of ``offered``, best first (pure).

    Over TLS, PLAIN: one round trip, any password storage on the server, UTF-8 names.
    Without TLS, CRAM-MD5 first, as it does not put the password on the wire.
    """
    order = PASSWORD_MECHANISMS if encrypted else ("cram-md5", "plain", "login")
    have = {m.lower() for m in offered}
    return [m for m in order if m in have]


async def login(
    client: aiosmtplib.SMTP, username: str, password: str, *, encrypted: bool
) -> tuple[str, aiosmtplib.SMTPResponse]:
    """Sign in; returns the mechanism used and the server's reply.

    Raises :class:`NoPasswordMechanism`, or :class:`LoginRefused` when the server refuses
    the login (other aiosmtplib errors pass through).
    """
    chosen = choose_mechanisms(list(client.server_auth_methods), encrypted=encrypted)
    if not chosen:
        raise NoPasswordMechanism(list(client.server_auth_methods))
    methods: dict[str, Callable[[str, str], Awaitable[aiosmtplib.SMTPResponse]]] = {
        "plain": client.auth_plain,
        "login": client.auth_login,
        "cram-md5": client.auth_crammd5,
    }
    for i, mechanism in enumerate(chosen):
        try:
            return mechanism, await methods[mechanism](username, password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            if i + 1 < len(chosen) and mechanism_unusable(exc.code, exc.message):
                continue
            raise LoginRefused(exc.code, exc.message, mechanism) from None
    raise AssertionError("unreachable")
