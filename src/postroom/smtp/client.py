"""Open an SMTP session for delivery: policy-checked address, TLS as configured, login.

Errors become :class:`SmtpConnectError` here (one boundary); a connection that cannot be
made is a transient fault for the messages waiting on it.
"""

from __future__ import annotations

import aiosmtplib

from postroom.net.connect import ConnectFailed
from postroom.net.policy import NetPolicy
from postroom.net.proxy import open_socket
from postroom.net.resolve import BlockedByPolicy, HostNotFound, ResolveTimeout
from postroom.net.tls import make_context
from postroom.oauth2.errors import TokenError
from postroom.oauth2.smtp_auth import NoTokenMechanism, sign_in
from postroom.profiles.schemas import AuthMethod, Security, SmtpSettings
from postroom.smtp.auth import LoginRefused, NoPasswordMechanism, login

__all__ = ["SmtpConnectError", "open_smtp"]


class SmtpConnectError(Exception):
    """No usable session: ``code`` is the server's reply code when there was one."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


async def open_smtp(s: SmtpSettings, *, policy: NetPolicy) -> aiosmtplib.SMTP:
    """A connected, (STARTTLS-)secured and signed-in session, ready for MAIL FROM."""
    try:
        sock, _ = await open_socket(s.host, s.port, policy=policy, timeout=s.connect_timeout_s)
    except (HostNotFound, BlockedByPolicy, ResolveTimeout, ConnectFailed) as exc:
        raise SmtpConnectError(str(exc)) from None
    client = aiosmtplib.SMTP(
        hostname=s.host,
        sock=sock,
        use_tls=s.security is Security.TLS,
        start_tls=False,
        # loading the system CA store costs ~50 ms: only when TLS will be spoken
        tls_context=(
            make_context(verify=s.verify_certificate, ca_bundle=s.ca_bundle)
            if s.security is not Security.NONE
            else None
        ),
        timeout=s.send_timeout_s,
        local_hostname=s.local_hostname,
    )
    try:
        await client.connect(timeout=s.connect_timeout_s)
        await client.ehlo()
        if s.security is Security.STARTTLS:
            if not client.supports_extension("starttls"):
                raise SmtpConnectError(
                    f"{s.host}:{s.port} does not offer STARTTLS; postroom never sends in plaintext "
                    "when the profile asks for STARTTLS."
                )
            await client.starttls(server_hostname=s.host, timeout=s.connect_timeout_s)
            await client.ehlo()
        if s.auth is AuthMethod.BASIC:
            username = f"{s.auth_domain}\\{s.username}" if s.auth_domain else (s.username or "")
            # one mechanism, tried once: a wrong password is one failed login
            await login(
                client, username, s.password or "", encrypted=s.security is not Security.NONE
            )
        elif s.auth is AuthMethod.OAUTH2:
            await sign_in(client, s.oauth2_config or "", host=s.host, port=s.port)
    except SmtpConnectError:
        client.close()
        raise
    except LoginRefused as exc:
        client.close()
        raise SmtpConnectError(str(exc), code=exc.code) from None
    except (TokenError, NoTokenMechanism, NoPasswordMechanism) as exc:
        # consent needed: the profile's deliveries are paused (the claim skips them) and
        # these messages wait as 'retrying' until someone reconnects
        client.close()
        raise SmtpConnectError(str(exc)) from None
    except aiosmtplib.SMTPResponseException as exc:
        client.close()
        raise SmtpConnectError(f"{exc.code} {exc.message}", code=exc.code) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        client.close()
        raise SmtpConnectError(f"{type(exc).__name__}: {exc}") from None
    return client
