"""The SMTP connection test: resolve, connect, TLS, EHLO, AUTH and optionally a real send.

Every aiosmtplib and socket error is mapped to a diagnosis code here, at one boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any

import aiosmtplib

from postroom.diagnostics.recorder import Abort, Recorder, StepFailed
from postroom.diagnostics.steps import Code, Diagnosis
from postroom.errors import PostroomError
from postroom.net.connect import ConnectFailed, Sniffed, connect_first, sniff
from postroom.net.policy import NetPolicy
from postroom.net.proxy import open_tunnel
from postroom.net.proxy_spec import ProxySpec
from postroom.net.resolve import BlockedByPolicy, HostNotFound, ResolveTimeout, resolve
from postroom.net.tls import classify_tls_error, describe_tls, make_context
from postroom.oauth2.access import bearer_for, forget
from postroom.oauth2.errors import TokenError
from postroom.oauth2.sasl import choose_mechanism
from postroom.oauth2.smtp_auth import NoTokenMechanism, authenticate
from postroom.oauth2.tokens import AccessToken
from postroom.profiles.schemas import AuthMethod, ProfileSpec, Security, SmtpSettings
from postroom.smtp.auth import LoginRefused, NoPasswordMechanism, login
from postroom.smtp.esmtp import describe_size, offers_from
from postroom.smtp.i18n import ascii_domain
from postroom.smtp.replies import Refusal, rcpt_refusal

__all__ = ["TEST_HEADER", "build_test_message", "probe_smtp", "resolve_and_connect"]

TEST_HEADER = "X-Postroom-Test"
_PROBE_LINE = b"EHLO postroom.invalid\r\n"
#: silence before the greeting after which the port is looked at again (see _watch_greeting)
_SNIFF_AFTER_S = 1.0
# the hint matches the step that was running when the whole test ran out of time
_CAP_CODES = {
    "resolve": Code.DNS_NOT_FOUND,
    "connect": Code.CONNECT_TIMEOUT,
    "greeting": Code.GREETING_TIMEOUT,
    "tls": Code.TLS_HANDSHAKE_FAILED,
    "send": Code.SEND_TIMEOUT,
}


def build_test_message(spec: ProfileSpec, to: str, token: str) -> EmailMessage:
    """The test mail: marked auto-generated so it triggers no auto-replies."""
    msg = EmailMessage()
    from_address = ascii_domain(spec.sender.from_address)
    msg["From"] = formataddr((spec.sender.from_name or "", from_address))
    msg["To"] = to
    msg["Subject"] = f"Postroom test message for profile '{spec.name}' [{token[:8]}]"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=from_address.rsplit("@", 1)[1])
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg[TEST_HEADER] = token
    if spec.sender.reply_to:
        msg["Reply-To"] = spec.sender.reply_to
    msg.set_content(
        f"This is a test message from postroom for the email profile '{spec.name}'.\n"
        "If you can read it, sending through this profile works. No reply is needed.\n"
    )
    return msg


def _refused(code: Code, what: str, reply_code: int, text: str) -> StepFailed:
    """A step failure that quotes the server's reply (message and detail)."""
    return StepFailed(code, f"{what}: {reply_code} {text}", detail=f"{reply_code} {text}")


async def resolve_and_connect(
    rec: Recorder, host: str, port: int, *, policy: NetPolicy, timeout: float | None
) -> tuple[object, str]:
    """The `resolve` and `connect` steps (or one `proxy` step), shared by SMTP and IMAP."""
    if policy.proxy is not None:
        return await _through_proxy(rec, policy.proxy, host, port, policy=policy, timeout=timeout)
    async with rec.step("resolve") as st:
        try:
            addresses = await resolve(host, port, policy=policy, timeout=timeout)
        except HostNotFound as exc:
            raise StepFailed(
                Code.DNS_NOT_FOUND, f"The host name '{host}' was not found.", detail=exc.detail
            ) from None
        except BlockedByPolicy as exc:
            raise StepFailed(
                Code.BLOCKED_BY_POLICY,
                f"'{host}' port {port} is blocked by postroom's network policy.",
                detail=" ".join(d.reason for d in exc.denied),
            ) from None
        except ResolveTimeout:
            raise StepFailed(Code.DNS_NOT_FOUND, f"Resolving '{host}' timed out.") from None
        st.detail = ", ".join(addresses)
    async with rec.step("connect") as st:
        try:
            sock, address = await connect_first(addresses, port, timeout=timeout)
        except ConnectFailed as exc:
            raise StepFailed(exc.code, exc.message) from None
        st.detail = f"connected to {address} port {port}"
    return sock, address


async def _through_proxy(
    rec: Recorder,
    proxy: ProxySpec,
    host: str,
    port: int,
    *,
    policy: NetPolicy,
    timeout: float | None,
) -> tuple[object, str]:
    """The `proxy` step: a tunnel to ``host``:``port`` through ``proxy`` (which resolves)."""
    async with rec.step("proxy") as st:
        try:
            sock = await open_tunnel(proxy, host, port, policy=policy, timeout=timeout)
        except HostNotFound as exc:
            raise StepFailed(
                Code.DNS_NOT_FOUND,
                f"The proxy's host name '{proxy.host}' was not found.",
                detail=exc.detail,
            ) from None
        except BlockedByPolicy as exc:
            raise StepFailed(
                Code.BLOCKED_BY_POLICY,
                f"'{exc.host}' is blocked by postroom's network policy.",
                detail=" ".join(d.reason for d in exc.denied),
            ) from None
        except ResolveTimeout:
            raise StepFailed(
                Code.PROXY_TIMEOUT, f"Resolving the proxy '{proxy.host}' timed out."
            ) from None
        except ConnectFailed as exc:
            raise StepFailed(exc.code, exc.message) from None
        st.detail = f"tunnel to {host} port {port} through the {proxy.shown}"
    return sock, proxy.shown


def _not_smtp(port: int, found: Sniffed) -> StepFailed:
    what = "a web server (HTTP)" if found.kind == "http" else "not an SMTP server"
    return StepFailed(
        Code.PROTOCOL_ERROR,
        f"The server on port {port} is {what}; it answered: {found.first_line!r}",
        detail=found.first_line,
    )


async def _classify_no_greeting(address: str, port: int, security: Security) -> StepFailed:
    found: Sniffed = await sniff(address, port, probe_line=_PROBE_LINE)
    if found.kind == "tls":
        return StepFailed(
            Code.TLS_WRONG_MODE,
            f"The server on port {port} speaks TLS from the first byte, but security is "
            f"'{security}'.",
        )
    if found.kind in ("http", "imap", "other"):
        return _not_smtp(port, found)
    return StepFailed(
        Code.GREETING_TIMEOUT, f"Connected to port {port}, but the server sent no greeting."
    )


async def _watch_greeting(
    connecting: Coroutine[Any, Any, aiosmtplib.SMTPResponse], address: str, s: SmtpSettings
) -> aiosmtplib.SMTPResponse:
    """Await the greeting; when the server stays silent for a moment, look at the port
    again on a fresh connection while the first one keeps waiting. A port that completes a
    TLS handshake (implicit TLS, 465) never greets — it waits for a ClientHello — so that
    is reported in seconds, not after the whole connect timeout. A slow greeter (greet
    pause, postscreen) is simply waited for."""
    task = asyncio.ensure_future(connecting)
    sniffer: asyncio.Task[Sniffed] | None = None
    try:
        done, _ = await asyncio.wait({task}, timeout=_SNIFF_AFTER_S)
        if not done:
            sniffer = asyncio.create_task(sniff(address, s.port, probe_line=_PROBE_LINE))
            await asyncio.wait({task, sniffer}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                found = sniffer.result()
                if found.kind == "tls":
                    raise StepFailed(
                        Code.TLS_WRONG_MODE,
                        f"The server on port {s.port} sent no greeting but completed a TLS "
                        f"handshake: it speaks TLS from the first byte, but security is "
                        f"'{s.security}'.",
                        detail="no SMTP greeting; a fresh connection completed a TLS handshake",
                    )
                if found.kind in ("http", "imap", "other"):
                    raise _not_smtp(s.port, found)
        return await task
    finally:
        for pending in (task, sniffer):
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiosmtplib.SMTPException):
                    await pending


async def _greet(rec: Recorder, client: aiosmtplib.SMTP, s: SmtpSettings, address: str) -> None:
    implicit = s.security is Security.TLS
    name = "tls" if implicit else "greeting"
    async with rec.step(name) as st:
        try:
            connecting = client.connect(timeout=s.connect_timeout_s)
            reply = await (connecting if implicit else _watch_greeting(connecting, address, s))
        except aiosmtplib.SMTPConnectTimeoutError:
            raise await _classify_no_greeting(address, s.port, s.security) from None
        except aiosmtplib.SMTPConnectResponseError as exc:
            raise _refused(
                Code.PROTOCOL_ERROR, "The server refused the session", exc.code, exc.message
            ) from None
        except aiosmtplib.SMTPConnectError as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError):
                failure = classify_tls_error(cause)
                if failure.code == Code.TLS_WRONG_MODE:
                    found = await sniff(address, s.port, probe_line=b"EHLO postroom.invalid\r\n")
                    if found.kind == "smtp":
                        raise StepFailed(
                            Code.TLS_WRONG_MODE,
                            f"The server on port {s.port} speaks plaintext first "
                            f"({found.first_line!r}), but security is 'tls'.",
                            detail=failure.detail,
                        ) from None
                    if found.kind in ("http", "imap", "other"):
                        raise _not_smtp(s.port, found) from None
                raise StepFailed(failure.code, failure.detail, detail=failure.detail) from None
            raise StepFailed(
                Code.PROTOCOL_ERROR,
                "The server closed the connection before greeting.",
                detail=str(exc),
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            # a malformed or endless greeting (aiosmtplib bounds the lines it reads)
            raise StepFailed(
                Code.PROTOCOL_ERROR,
                f"The server on port {s.port} did not greet like an SMTP server: {exc.message[:200]}",
            ) from None
        banner = reply.message.splitlines()[0][:200] if reply.message else ""
        st.detail = (
            describe_tls(client.get_transport_info("ssl_object")) + "; " if implicit else ""
        ) + banner


async def _ehlo(client: aiosmtplib.SMTP) -> str:
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError as exc:
        raise StepFailed(
            Code.PROTOCOL_ERROR, f"EHLO was refused: {exc.code} {exc.message}"
        ) from None
    except aiosmtplib.SMTPTimeoutError:
        raise StepFailed(Code.SEND_TIMEOUT, "The server did not answer EHLO in time.") from None
    except aiosmtplib.SMTPResponseException as exc:
        raise StepFailed(Code.PROTOCOL_ERROR, f"EHLO failed: {exc.code} {exc.message}") from None
    except aiosmtplib.SMTPServerDisconnected:
        raise StepFailed(
            Code.PROTOCOL_ERROR, "The server closed the connection after EHLO."
        ) from None
    offered = sorted(k.upper() for k in client.esmtp_extensions)
    offers = offers_from(client.esmtp_extensions)
    if offers.size:
        # the largest message this server takes: larger ones fail before they are sent
        offered[offered.index("SIZE")] = f"SIZE {offers.size} ({describe_size(offers.size)})"
    return " ".join(offered)


async def _starttls(rec: Recorder, client: aiosmtplib.SMTP, s: SmtpSettings) -> None:
    async with rec.step("starttls") as st:
        if not client.supports_extension("starttls"):
            raise StepFailed(
                Code.STARTTLS_NOT_OFFERED,
                f"The server on port {s.port} does not offer STARTTLS.",
                detail="EHLO: " + " ".join(sorted(client.esmtp_extensions)).upper(),
            )
        st.detail = "offered"
    async with rec.step("tls") as st:
        try:
            await client.starttls(server_hostname=s.host, timeout=s.connect_timeout_s)
        except aiosmtplib.SMTPResponseException as exc:
            raise StepFailed(
                Code.PROTOCOL_ERROR, f"STARTTLS was refused: {exc.code} {exc.message}"
            ) from None
        except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected) as exc:
            raise StepFailed(Code.TLS_HANDSHAKE_FAILED, f"The TLS upgrade failed: {exc}") from None
        except ssl.SSLError as exc:
            failure = classify_tls_error(exc)
            raise StepFailed(failure.code, failure.detail) from None
        # RFC 3207: forget what was learnt before TLS and ask again over the secure channel.
        caps = await _ehlo(client)
        st.detail = f"{describe_tls(client.get_transport_info('ssl_object'))}; EHLO again: {caps}"


async def _oauth2_token(rec: Recorder, s: SmtpSettings) -> AccessToken:
    """The `oauth2` step: an access token for the profile's OAuth2 configuration."""
    async with rec.step("oauth2") as st:
        try:
            token = await bearer_for(s.oauth2_config or "", ignore_backoff=True)
        except TokenError as exc:
            raise StepFailed(Code.OAUTH2_TOKEN_FAILED, exc.message, detail=exc.detail) from None
        except PostroomError as exc:  # NotFound, an undecryptable stored token
            raise StepFailed(Code.OAUTH2_TOKEN_FAILED, exc.message) from None
        st.detail = token.describe()
    return token


async def _oauth2_auth(client: aiosmtplib.SMTP, s: SmtpSettings, token: AccessToken) -> str:
    """AUTH with the token; a cached token the server refuses is replaced once."""
    for attempt in (1, 2):
        try:
            mechanism, reply = await authenticate(client, token, host=s.host, port=s.port)
            return f"signed in as {token.username} ({mechanism.upper()}): {reply.code}"
        except NoTokenMechanism as exc:
            raise StepFailed(Code.AUTH_MECHANISM_UNSUPPORTED, str(exc)) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            await forget(token)
            if attempt == 2 or token.fresh:
                used = (choose_mechanism(client.server_auth_methods) or "").upper()
                raise StepFailed(
                    Code.AUTH_FAILED,
                    f"The server refused the access token for '{token.username}' "
                    f"(AUTH {used}): {exc.code} "
                    f"{exc.message}. Check that the configuration's username is the signed-in "
                    "mailbox, that the token has the mail scopes, and that the mailbox allows "
                    "SMTP AUTH (Microsoft 365: 'Authenticated SMTP').",
                    detail=f"AUTH {used}: {exc.code} {exc.message}",
                ) from None
            try:
                token = await bearer_for(s.oauth2_config or "", rejected=token)
            except TokenError as exc2:
                raise StepFailed(
                    Code.OAUTH2_TOKEN_FAILED,
                    f"The server refused the cached access token, and no new one could be "
                    f"obtained: {exc2.message}",
                    detail=exc2.detail,
                ) from None
        except aiosmtplib.SMTPTimeoutError:
            raise StepFailed(
                Code.SEND_TIMEOUT, "The server did not answer the login in time."
            ) from None
        except aiosmtplib.SMTPException as exc:
            raise StepFailed(Code.PROTOCOL_ERROR, f"The login failed: {exc}") from None
    raise AssertionError("unreachable")


async def _auth(rec: Recorder, client: aiosmtplib.SMTP, s: SmtpSettings) -> None:
    token = await _oauth2_token(rec, s) if s.auth is AuthMethod.OAUTH2 else None
    async with rec.step("auth") as st:
        if not client.supports_extension("auth"):
            raise StepFailed(
                Code.AUTH_NOT_OFFERED,
                "The server does not offer AUTH on this connection.",
                detail="EHLO: " + " ".join(sorted(client.esmtp_extensions)).upper(),
            )
        if token is not None:
            st.detail = await _oauth2_auth(client, s, token)
            return
        username = s.username or ""
        if s.auth_domain:
            username = f"{s.auth_domain}\\{username}"
        offered = " ".join(m.upper() for m in client.server_auth_methods)
        try:
            mechanism, reply = await login(
                client, username, s.password or "", encrypted=s.security is not Security.NONE
            )
        except NoPasswordMechanism as exc:
            raise StepFailed(
                Code.AUTH_MECHANISM_UNSUPPORTED, str(exc), detail=f"AUTH {offered}"
            ) from None
        except LoginRefused as exc:
            raise StepFailed(
                Code.AUTH_FAILED,
                f"The server refused the login for '{username}' with AUTH "
                f"{exc.mechanism.upper()}: {exc.code} {exc.message}",
                detail=f"AUTH {exc.mechanism.upper()} (offered: {offered}): {exc.code} {exc.message}",
            ) from None
        except aiosmtplib.SMTPTimeoutError:
            raise StepFailed(
                Code.SEND_TIMEOUT, "The server did not answer the login in time."
            ) from None
        except aiosmtplib.SMTPException as exc:
            raise StepFailed(Code.PROTOCOL_ERROR, f"The login failed: {exc}") from None
        st.detail = (
            f"signed in as {username} with AUTH {mechanism.upper()} (offered: {offered}): "
            f"{reply.code}"
        )


async def _send(rec: Recorder, client: aiosmtplib.SMTP, spec: ProfileSpec, to: str) -> str:
    token = secrets.token_hex(16)
    async with rec.step("send") as st:
        to = ascii_domain(to)  # a non-ASCII domain as its IDNA A-label
        msg = build_test_message(spec, to, token)
        try:
            # aiosmtplib asks for SMTPUTF8 when an address needs it (RFC 6531)
            errors, reply = await client.send_message(msg)
        except aiosmtplib.SMTPNotSupported:
            sender_needs = not spec.sender.from_address.partition("@")[0].isascii()
            raise StepFailed(
                Code.SENDER_REJECTED if sender_needs else Code.RECIPIENT_REJECTED,
                f"The server does not offer SMTPUTF8 (RFC 6531), which the address "
                f"{spec.sender.from_address if sender_needs else to} needs: it has non-ASCII "
                "characters before the '@'. Nothing was sent.",
                detail="EHLO: " + " ".join(sorted(client.esmtp_extensions)).upper(),
            ) from None
        except aiosmtplib.SMTPSenderRefused as exc:
            raise _refused(
                Code.SENDER_REJECTED,
                f"The server refused the sender {exc.sender}",
                exc.code,
                exc.message,
            ) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0]
            signed_in = spec.smtp.auth is not AuthMethod.NONE
            refusal = rcpt_refusal(first.code, first.message, signed_in=signed_in)
            if refusal is Refusal.SENDER:
                raise _refused(
                    Code.SENDER_REJECTED,
                    f"The server refused the sender {spec.sender.from_address} (in its reply "
                    f"to RCPT TO {first.recipient})",
                    first.code,
                    first.message,
                ) from None
            failure = _refused(
                Code.RECIPIENT_REJECTED,
                f"The server refused the recipient {first.recipient}"
                + (" from a client that did not sign in" if refusal is Refusal.NEEDS_LOGIN else ""),
                first.code,
                first.message,
            )
            failure.cause = refusal.value
            raise failure from None
        except aiosmtplib.SMTPDataError as exc:
            raise _refused(
                Code.MESSAGE_REJECTED, "The server refused the message", exc.code, exc.message
            ) from None
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            raise StepFailed(
                Code.SEND_TIMEOUT, "The server stopped answering while the message was sent."
            ) from None
        except aiosmtplib.SMTPServerDisconnected:
            raise StepFailed(
                Code.SEND_TIMEOUT, "The server closed the connection while the message was sent."
            ) from None
        st.detail = f"sent to {to}: {reply.splitlines()[0][:200] if reply else 'accepted'}"
    return token


async def probe_smtp(
    spec: ProfileSpec,
    *,
    policy: NetPolicy,
    send_to: str | None = None,
    cap_s: float = 30.0,
    rec: Recorder | None = None,
) -> tuple[Diagnosis, str | None]:
    """Test the profile's SMTP side; returns the diagnosis and, if a test mail was sent, its token."""
    s = spec.smtp
    rec = rec or Recorder("smtp", "smtp", s.host, s.port, s.security.value)
    client: aiosmtplib.SMTP | None = None
    token: str | None = None
    started = time.perf_counter()
    try:
        async with asyncio.timeout(cap_s):
            sock, address = await resolve_and_connect(
                rec, s.host, s.port, policy=policy, timeout=s.connect_timeout_s
            )
            client = aiosmtplib.SMTP(
                hostname=s.host,
                sock=sock,  # type: ignore[arg-type]
                use_tls=s.security is Security.TLS,
                start_tls=False,
                tls_context=make_context(verify=s.verify_certificate, ca_bundle=s.ca_bundle),
                timeout=s.send_timeout_s,
                local_hostname=s.local_hostname,
            )
            await _greet(rec, client, s, address)
            async with rec.step("ehlo") as st:
                st.detail = await _ehlo(client)
            if s.security is Security.STARTTLS:
                await _starttls(rec, client, s)
            if s.auth is not AuthMethod.NONE:
                await _auth(rec, client, s)
            if send_to:
                token = await _send(rec, client, spec, send_to)
    except Abort:
        pass
    except TimeoutError:
        step = rec.current or "test"
        rec.fail(
            step,
            _CAP_CODES.get(step, Code.TEST_TIMEOUT),
            f"The test ran out of time after {time.perf_counter() - started:.0f} s "
            f"during '{step}'.",
        )
    finally:
        if client is not None and client.is_connected:
            if rec.diagnosis.error is not None:
                client.close()  # a stalled server would not answer QUIT either
            else:
                try:
                    await asyncio.wait_for(client.quit(), 2)
                except (aiosmtplib.SMTPException, TimeoutError, OSError):
                    client.close()
    return rec.finish(), token
