"""One IMAP session: IMAPClient (on imaplib) driven from asyncio through a worker thread.

The session connects only to an address the network policy checked (resolved once by
:func:`postroom.net.resolve.resolve`), while TLS verifies the configured *host name*
(SNI and certificate check against ``host``, never against the IP). Reads are bounded
(:class:`ImapLimits`), so a hostile server cannot exhaust memory with an endless line or a
huge literal. Every library and socket error is turned into :class:`ImapError` in one place,
:meth:`ImapSession._translate`::

    PostroomError
    └── ImapError(code, message, detail)   ``code`` is a diagnosis Code, e.g. auth_failed

Usage::

    session = await ImapSession.open(settings, policy=policy, timeout=30)
    try:
        await session.login()
        count = await session.select("INBOX")
        uids = await session.search_header("X-Postroom-Test", token)
    finally:
        await session.logout()

The connection test (:mod:`postroom.diagnostics.imap_probe`) calls the steps one by one
instead: :meth:`~ImapSession.resolve`, :meth:`~ImapSession.connect`, then
:meth:`~ImapSession.handshake` + :meth:`~ImapSession.greet` (implicit TLS) or
:meth:`~ImapSession.greet` + :meth:`~ImapSession.starttls` + :meth:`~ImapSession.handshake`
(STARTTLS), then :meth:`~ImapSession.capability`, :meth:`~ImapSession.login`, ...
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import imaplib
import re
import socket
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from postroom.diagnostics.steps import Code
from postroom.errors import PostroomError
from postroom.net.connect import ConnectFailed, connect_first
from postroom.net.policy import NetPolicy
from postroom.net.proxy import open_tunnel
from postroom.net.resolve import BlockedByPolicy, HostNotFound, ResolveTimeout, resolve
from postroom.net.tls import classify_tls_error, describe_tls, make_context
from postroom.profiles.schemas import ImapSettings, Security
from postroom.redact import redact

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

__all__ = [
    "ImapError",
    "ImapLimitExceeded",
    "ImapLimits",
    "ImapSession",
    "greeting_text",
    "server_text",
]

_T = TypeVar("_T")


class _Unset:
    """ "Not given", as opposed to ``None`` ("no timeout")."""


_UNSET = _Unset()

# After a timeout or cancellation the socket is shut down, which wakes the worker thread at
# once; this only bounds the wait in case it does not.
_SETTLE_S = 0.5
# Saying goodbye must never hold up a caller that is done with the session.
_LOGOUT_S = 2.0
_MIB = 1024 * 1024
# What keeping one response line costs in memory besides its bytes: the bytes object's header,
# the list slot and the tuples imaplib wraps some lines in (measured: ~100 bytes).
_LINE_COST = 128


@dataclass(frozen=True)
class ImapLimits:
    """Upper bounds on what the server may send; exceeding one is a ``protocol_error``.

    ``max_line_bytes`` bounds one response line (a SEARCH result for a whole large mailbox
    is one line, hence 1 MiB rather than imaplib's 1 MB default); ``max_literal_bytes``
    bounds one ``{n}`` literal, i.e. one fetched message; ``max_response_bytes`` bounds
    everything kept for one command, so endless short lines are stopped too. imaplib keeps
    every response line of a command as a Python object, so each line counts with
    ``_LINE_COST`` bytes on top of its length.
    """

    max_line_bytes: int = 1 * _MIB
    max_literal_bytes: int = 64 * _MIB
    max_response_bytes: int = 256 * _MIB


class ImapError(PostroomError):
    """An IMAP step failed. ``code`` is a stable diagnosis code; ``message`` is for people.

    Neither ``message`` nor ``detail`` ever contains the password.
    """

    code: Code  # narrows PostroomError.code

    def __init__(self, code: Code, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


class ImapLimitExceeded(ImapError):
    """The server sent more than an :class:`ImapLimits` bound allows (``protocol_error``).

    Raised instead of reading on; the session is closed. Callers that fetch messages use it
    to tell "this message is too large to take" from a connection fault.
    """


class _LimitExceeded(Exception):
    # Deliberately not an imaplib error: IMAPClient turns any imaplib error during LOGIN
    # into LoginError, which would report an oversized answer as a wrong password.
    pass


class _Op(Enum):
    """What the session was doing; the value completes "... during <value>"."""

    RESOLVE = "name resolution"
    CONNECT = "connect"
    HANDSHAKE = "the TLS handshake"
    GREETING = "the greeting"
    STARTTLS = "STARTTLS"
    CAPABILITY = "CAPABILITY"
    LOGIN = "the login"
    SELECT = "SELECT"
    LIST = "LIST"
    SEARCH = "SEARCH"
    FETCH = "FETCH"
    STORE = "STORE"
    MOVE = "MOVE"
    EXPUNGE = "EXPUNGE"
    IDLE = "IDLE"
    NOOP = "NOOP"
    LOGOUT = "LOGOUT"


def greeting_text(welcome: bytes) -> str:
    """The human part of a greeting: ``* OK [CAPABILITY …] Dovecot ready.`` → ``Dovecot ready.``"""
    text = welcome.decode("utf-8", "replace").strip()
    match = re.match(r"\*\s+(?:OK|PREAUTH|BYE)\s+(?:\[[^\]]*\]\s*)?(.*)", text, re.IGNORECASE)
    return _printable(match.group(1) if match else text)


def server_text(value: object) -> str:
    """What the server said, for people: ``b"select failed: Mailbox doesn't exist: X (0.001 +
    0.000 secs)."`` → ``Mailbox doesn't exist: X.``

    imaplib and IMAPClient put the server's bytes into exception texts as ``b'...'`` reprs
    and prefix ``<command> failed:``; Dovecot appends timings. All of that is noise here.
    """
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
    else:
        text = str(value)
    text = _FAILED_PREFIX.sub("", text.strip())
    if _BYTES_REPR.fullmatch(text):
        with contextlib.suppress(ValueError, SyntaxError):
            text = bytes(ast.literal_eval(text)).decode("utf-8", "replace")
    return _printable(_DOVECOT_TIMING.sub("", text))


_FAILED_PREFIX = re.compile(r"^[A-Za-z]+ failed: ")
_BYTES_REPR = re.compile(r"b(['\"]).*\1", re.DOTALL)
_DOVECOT_TIMING = re.compile(r"\s*\(\d+\.\d+ \+ \d+\.\d+(?: \+ \d+\.\d+)? secs\)")


def _printable(text: str, limit: int = 200) -> str:
    shown = "".join(c if c.isprintable() else "?" for c in text.strip())
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _size(n: int) -> str:
    return f"{n / _MIB:g} MiB" if n >= _MIB else f"{n} bytes"


class _BoundedIMAP4(imaplib.IMAP4):
    """imaplib over a socket we already connected (and maybe wrapped), with read limits."""

    def __init__(self, sock: socket.socket, host: str, port: int, limits: ImapLimits) -> None:
        self._given = sock
        self._limits = limits
        self._received = 0
        # Reads the greeting and asks for CAPABILITY, like every imaplib connection.
        super().__init__(host, port)

    def open(self, host: str = "", port: int = 143, timeout: float | None = None) -> None:
        # imaplib would connect to ``host`` itself, resolving it again; we use the socket
        # that went to the address the policy checked.
        self.host = host
        self.port = port
        self.sock = self._given
        self.file = self._reader = self.sock.makefile("rb")

    def rewrap(self, sock: ssl.SSLSocket) -> None:
        """Continue over ``sock`` after STARTTLS.

        Anything the old reader had buffered arrived in plaintext before TLS and is dropped
        unread (a STARTTLS command-injection attempt, RFC 3501 section 6.2.1), as are the
        untagged responses and capabilities learnt before TLS (RFC 2595 section 3.1).
        """
        with contextlib.suppress(OSError):
            self._reader.close()
        self.sock = sock
        self.file = self._reader = sock.makefile("rb")
        self.untagged_responses.clear()
        self._tls_established = True

    def command(self, name: str) -> tuple[str, list[Any]]:
        """Send a bare command and wait for its tagged answer: ``("OK", [b"text"])``."""
        typ, data = self._simple_command(name)
        return str(typ), list(data)

    def refresh_capabilities(self) -> None:
        self._get_capabilities()

    def readline(self) -> bytes:
        limit = self._limits.max_line_bytes
        line = self._reader.readline(limit + 1)
        if len(line) > limit:
            raise _LimitExceeded(
                f"The server sent a line longer than {_size(limit)}; postroom stopped reading."
            )
        self._account(len(line) + _LINE_COST)
        return line

    def read(self, size: int) -> bytes:
        if size > self._limits.max_literal_bytes:
            raise _LimitExceeded(
                f"The server announced {size} bytes of data, more than the limit of "
                f"{_size(self._limits.max_literal_bytes)}; postroom did not read them."
            )
        self._account(size)
        return self._reader.read(size)

    def send(self, data: Buffer) -> None:
        self._received = 0  # a new command: a new budget for its answer
        super().send(data)

    def _account(self, n: int) -> None:
        self._received += n
        if self._received > self._limits.max_response_bytes:
            raise _LimitExceeded(
                f"The server's answer to one command exceeded "
                f"{_size(self._limits.max_response_bytes)}; postroom stopped reading."
            )


class _Client(IMAPClient):  # type: ignore[misc]  # IMAPClient ships no type hints
    """IMAPClient over a connection we made: it must not open its own."""

    def __init__(
        self, make_imap4: Callable[[], _BoundedIMAP4], *, host: str, port: int, tls: bool
    ) -> None:
        self._make_imap4 = make_imap4
        super().__init__(host, port=port, ssl=tls, timeout=None)

    def _create_IMAP4(self) -> _BoundedIMAP4:  # IMAPClient's hook, named by IMAPClient
        return self._make_imap4()


class ImapSession:
    """One IMAP connection, driven step by step or opened at once with :meth:`open`.

    ``timeout`` (seconds) bounds each network operation; ``None`` means no bound, as a
    profile's ``connect_timeout_s: null`` says. A caller's own deadline (``asyncio.timeout``)
    also works: cancelling any method shuts the connection down and frees its thread.
    IMAPClient is blocking, so each session runs it on a thread of its own; the shared default
    executor is left to ``getaddrinfo``, which a stalled server would otherwise starve.

    Every method raises :class:`ImapError`; after a network or protocol error, or a timeout,
    the session is closed and further calls fail with ``protocol_error``.
    """

    def __init__(
        self,
        settings: ImapSettings,
        *,
        policy: NetPolicy,
        timeout: float | None,
        limits: ImapLimits | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.timeout = timeout
        self.limits = limits or ImapLimits()
        self.addresses: list[str] = []
        self.address: str | None = None
        self.greeting = ""
        self.tls = False
        self.authenticated = False
        self._sock: socket.socket | None = None
        self._imap4: _BoundedIMAP4 | None = None
        self._client: Any = None  # _Client; IMAPClient is untyped
        self._caps_stale = False
        self._closed = False
        self._executor: ThreadPoolExecutor | None = None
        self._running: asyncio.Future[Any] | None = None

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        settings: ImapSettings,
        *,
        policy: NetPolicy,
        timeout: float | None,
        limits: ImapLimits | None = None,
    ) -> Self:
        """Resolve, connect, secure (per ``settings.security``) and read the capabilities.

        Returns a session ready for :meth:`login`. Raises :class:`ImapError`.
        """
        session = cls(settings, policy=policy, timeout=timeout, limits=limits)
        try:
            await session.resolve()
            await session.connect()
            if settings.security is Security.TLS:
                await session.handshake()
                await session.greet()
            else:
                await session.greet()
                if settings.security is Security.STARTTLS:
                    await session.starttls()
                    await session.handshake()
            await session.capability()
        except BaseException:
            session.close()
            raise
        return session

    async def resolve(self) -> list[str]:
        """Resolve the host once; returns the addresses the network policy allows."""
        s = self.settings
        try:
            self.addresses = await resolve(s.host, s.port, policy=self.policy, timeout=self.timeout)
        except Exception as exc:
            raise self._translate(_Op.RESOLVE, exc) from exc
        return self.addresses

    async def connect(self) -> str:
        """Open TCP to the first resolved address that accepts, or a tunnel through the
        proxy (``policy.proxy``, which resolves the name); returns what it connected to."""
        proxy = self.policy.proxy
        if proxy is not None:
            try:
                self._sock = await open_tunnel(
                    proxy,
                    self.settings.host,
                    self.settings.port,
                    policy=self.policy,
                    timeout=self.timeout,
                )
            except Exception as exc:
                raise self._translate(_Op.CONNECT, exc) from exc
            self.address = proxy.shown
            self._sock.setblocking(True)
            return self.address
        if not self.addresses:
            await self.resolve()
        try:
            self._sock, self.address = await connect_first(
                self.addresses, self.settings.port, timeout=self.timeout
            )
        except Exception as exc:
            raise self._translate(_Op.CONNECT, exc) from exc
        # From here on the socket belongs to one worker thread, in blocking mode; timeouts
        # and cancellation are enforced from the event loop by shutting the socket down.
        self._sock.setblocking(True)
        return self.address

    async def handshake(self) -> str:
        """TLS on the connection (implicit TLS before :meth:`greet`, or after :meth:`starttls`).

        Verifies the certificate against ``settings.host`` unless ``verify_certificate`` is
        off, trusting ``ca_bundle`` as well as the system CAs. Returns a description such as
        ``"TLSv1.3, TLS_AES_256_GCM_SHA384; certificate for localhost, expires 2027-01-01"``.
        """
        sock = self._require_socket()
        s = self.settings
        try:
            context = make_context(verify=s.verify_certificate, ca_bundle=s.ca_bundle)
            # No I/O yet (do_handshake_on_connect=False); the handshake runs in the thread.
            tls_sock = context.wrap_socket(
                sock, server_hostname=s.host, do_handshake_on_connect=False
            )
        except Exception as exc:
            raise self._translate(_Op.HANDSHAKE, exc) from exc
        self._sock = tls_sock
        await self._call(_Op.HANDSHAKE, tls_sock.do_handshake)
        self.tls = True
        if self._imap4 is not None:
            self._imap4.rewrap(tls_sock)
            self._caps_stale = True
        return describe_tls(tls_sock)

    async def greet(self) -> str:
        """Read the server's greeting (and its first CAPABILITY answer); returns its text."""
        sock = self._require_socket()
        s, limits, tls = self.settings, self.limits, self.tls

        def make() -> Any:
            return _Client(
                lambda: _BoundedIMAP4(sock, s.host, s.port, limits),
                host=s.host,
                port=s.port,
                tls=tls,
            )

        self._client = await self._call(_Op.GREETING, make)
        self._imap4 = self._client._imap
        assert self._imap4 is not None
        self.greeting = greeting_text(self._imap4.welcome)
        self.authenticated = self._imap4.state == "AUTH"  # PREAUTH
        return self.greeting

    async def starttls(self) -> None:
        """Ask for TLS (STARTTLS); follow with :meth:`handshake`.

        Never falls back to plaintext: raises ``starttls_not_offered`` if the server does not
        advertise STARTTLS, refuses it, or pre-authenticated the connection (PREAUTH), which
        leaves no way to secure it.
        """
        imap4 = self._require_imap4()
        port = self.settings.port
        if self.authenticated:
            raise ImapError(
                Code.STARTTLS_NOT_OFFERED,
                "The server signed this connection in before STARTTLS (PREAUTH), so it cannot "
                "be secured; postroom never continues without TLS.",
            )
        if "STARTTLS" not in self.capabilities:
            raise ImapError(
                Code.STARTTLS_NOT_OFFERED,
                f"The server on port {port} does not offer STARTTLS.",
                detail="CAPABILITY: " + _printable(" ".join(self.capabilities)),
            )
        typ, data = await self._call(_Op.STARTTLS, lambda: imap4.command("STARTTLS"))
        if typ != "OK":
            raise ImapError(
                Code.STARTTLS_NOT_OFFERED,
                f"The server refused STARTTLS: {typ} {self._text(data)}",
            )

    async def capability(self) -> tuple[str, ...]:
        """The server's capabilities; asked again after STARTTLS, as RFC 3501 requires."""
        imap4 = self._require_imap4()
        if self._caps_stale:
            await self._call(_Op.CAPABILITY, imap4.refresh_capabilities)
            self._caps_stale = False
        return self.capabilities

    @property
    def capabilities(self) -> tuple[str, ...]:
        """Capabilities as last announced, upper-case, in the server's order."""
        return tuple(self._imap4.capabilities) if self._imap4 is not None else ()

    # -- using ----------------------------------------------------------------------------------

    async def login(self) -> str:
        """Sign in with the settings' username and password; returns a short description.

        Uses LOGIN, or AUTHENTICATE PLAIN when the server disables LOGIN or the credentials
        are not ASCII (LOGIN cannot carry them). Raises ``auth_not_offered`` when the server
        allows no login on this connection (LOGINDISABLED without TLS: postroom sends no
        password in the clear), ``auth_mechanism_unsupported`` when no usable mechanism is
        offered, ``auth_failed`` when the server refuses the credentials.

        With auth ``oauth2``: AUTHENTICATE XOAUTH2 (or OAUTHBEARER) with an access token for
        the profile's OAuth2 configuration; ``oauth2_token_failed`` when there is none.
        """
        self._require_imap4()
        if self.authenticated:
            return "pre-authenticated by the server (PREAUTH)"
        if self.settings.security is not Security.NONE and not self.tls:
            # A caller that skipped starttls()/handshake() must not leak the password.
            raise ImapError(
                Code.PROTOCOL_ERROR, "The connection is not secured yet; no password was sent."
            )
        if self.settings.auth == "oauth2":
            # SASL XOAUTH2 / OAUTHBEARER with a token for the profile's OAuth2 configuration
            from postroom.oauth2 import access, sasl
            from postroom.oauth2.errors import TokenError

            try:
                token = await access.bearer_for(self.settings.oauth2_config or "")
            except TokenError as exc:
                raise ImapError(Code.OAUTH2_TOKEN_FAILED, exc.message, detail=exc.detail) from None
            offered = [c[5:].lower() for c in self.capabilities if c.startswith("AUTH=")]
            mech = sasl.choose_mechanism(offered)
            if mech is None:
                raise ImapError(
                    Code.AUTH_MECHANISM_UNSUPPORTED,
                    "The server offers no OAuth2 login (AUTH=XOAUTH2 or AUTH=OAUTHBEARER).",
                    detail="CAPABILITY: " + _printable(" ".join(self.capabilities)),
                )
            s, imap4 = self.settings, self._require_imap4()
            responder = access.imap_responder(
                mech, access.sasl_initial(mech, token, host=s.host, port=s.port)
            )

            def authenticate() -> tuple[str, list[Any]]:
                try:
                    typ, data = imap4.authenticate(mech.upper(), responder)
                except imaplib.IMAP4.abort:
                    raise
                except imaplib.IMAP4.error as exc:
                    raise LoginError(str(exc)) from exc
                return str(typ), list(data)

            try:
                await self._call(_Op.LOGIN, authenticate)
            except ImapError as exc:
                if exc.code is Code.AUTH_FAILED:
                    await access.forget(token)  # the next sign-in fetches a new token
                    raise ImapError(
                        Code.AUTH_FAILED,
                        f"The server refused the access token for '{token.username}': {exc.detail}",
                        detail=exc.detail,
                    ) from None
                raise
            self.authenticated = True
            return f"signed in as {token.username} ({mech.upper()})"
        user = self.settings.username or ""
        password = self.settings.password or ""
        caps = self.capabilities
        plain = "AUTH=PLAIN" in caps
        if "LOGINDISABLED" in caps and not self.tls:
            raise ImapError(
                Code.AUTH_NOT_OFFERED,
                "The server does not allow a login on this unencrypted connection "
                "(LOGINDISABLED); use security 'starttls' or 'tls'.",
                detail="CAPABILITY: " + _printable(" ".join(caps)),
            )
        if "LOGINDISABLED" in caps or not (user + password).isascii():
            if not plain:
                why = (
                    "disables LOGIN"
                    if "LOGINDISABLED" in caps
                    else "cannot take a non-ASCII username or password with LOGIN"
                )
                raise ImapError(
                    Code.AUTH_MECHANISM_UNSUPPORTED,
                    f"The server {why} and does not offer AUTHENTICATE PLAIN.",
                    detail="CAPABILITY: " + _printable(" ".join(caps)),
                )
            mechanism = "AUTHENTICATE PLAIN"
            await self._call(_Op.LOGIN, lambda: self._client.plain_login(user, password))
        else:
            mechanism = "LOGIN"
            await self._call(_Op.LOGIN, lambda: self._client.login(user, password))
        self.authenticated = True
        return f"signed in as {user} ({mechanism})"

    async def select(self, folder: str, *, readonly: bool = True) -> int:
        """Open ``folder`` (read-only by default: EXAMINE); returns how many messages it holds.

        Raises ``imap_folder_missing`` when the server refuses it.
        """
        self._require_imap4()
        response = await self._call(
            _Op.SELECT, lambda: self._client.select_folder(folder, readonly=readonly)
        )
        return int(response.get(b"EXISTS", 0))

    async def list_folders(self) -> list[str]:
        """Names of every folder of the signed-in user (LIST "" "*")."""
        self._require_imap4()
        listed = await self._call(_Op.LIST, lambda: self._client.list_folders())
        return [str(name) for _flags, _delimiter, name in listed]

    async def search_header(self, name: str, value: str) -> list[int]:
        """UIDs of the messages in the selected folder whose header ``name`` contains ``value``.

        IMAP's HEADER search matches substrings; pass a unique token to find one message.
        """
        self._require_imap4()
        criteria = ["HEADER", name, value]
        charset = None if (name + value).isascii() else "UTF-8"
        found = await self._call(_Op.SEARCH, lambda: self._client.search(criteria, charset))
        return [int(uid) for uid in found]

    # -- closing --------------------------------------------------------------------------------

    async def logout(self) -> None:
        """Say LOGOUT (waiting at most a couple of seconds) and close. Never raises."""
        if self._client is not None and not self._closed:
            timeout = _LOGOUT_S if self.timeout is None else min(self.timeout, _LOGOUT_S)
            with contextlib.suppress(ImapError):
                await self._call(_Op.LOGOUT, self._client.logout, timeout=timeout)
        self.close()

    def close(self) -> None:
        """Close the connection at once, without LOGOUT. Idempotent; never raises."""
        self._closed = True
        running = self._running
        if running is not None and not running.done():
            # Closing a descriptor another thread still reads from could hit a reused one:
            # wake the thread, and release everything once it has returned.
            self._shutdown_socket()
            running.add_done_callback(lambda _f: self._release())
        else:
            self._release()

    async def __aenter__(self) -> ImapSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.logout()

    # -- internals ------------------------------------------------------------------------------

    def _require_socket(self) -> socket.socket:
        if self._closed or self._sock is None:
            raise ImapError(Code.PROTOCOL_ERROR, "The IMAP connection is not open.")
        return self._sock

    def _require_imap4(self) -> _BoundedIMAP4:
        self._require_socket()
        if self._imap4 is None:
            raise ImapError(Code.PROTOCOL_ERROR, "The server has not greeted yet.")
        return self._imap4

    async def _call(
        self, op: _Op, fn: Callable[[], _T], *, timeout: float | None | _Unset = _UNSET
    ) -> _T:
        """Run blocking ``fn`` on the session's thread, within the timeout, mapping errors."""
        if self._closed:
            raise ImapError(Code.PROTOCOL_ERROR, "The IMAP connection is closed.")
        limit = self.timeout if isinstance(timeout, _Unset) else timeout
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="postroom-imap")
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn)
        self._running = future
        try:
            done, _ = await asyncio.wait({future}, timeout=limit)
        except asyncio.CancelledError:
            await self._abandon(future)
            raise
        if not done:
            await self._abandon(future)
            raise self._timeout_error(op, limit or 0.0)
        try:
            return future.result()
        except Exception as exc:
            error = self._translate(op, exc)
            broken = isinstance(exc, OSError | _LimitExceeded | imaplib.IMAP4.abort)
            if broken or op is _Op.GREETING:
                # The stream is in an unknown state (imaplib also closes the socket when the
                # greeting fails): nothing more can be read from it.
                self.close()
            raise error from exc

    async def _abandon(self, future: asyncio.Future[Any]) -> None:
        self._closed = True
        self._shutdown_socket()
        await asyncio.wait({future}, timeout=_SETTLE_S)
        if future.done():
            self._release()
            if not future.cancelled():
                future.exception()  # retrieved: it is the consequence of our shutdown
        else:
            future.add_done_callback(self._release_after)

    def _release_after(self, future: asyncio.Future[Any]) -> None:
        self._release()
        if not future.cancelled():
            future.exception()

    def _shutdown_socket(self) -> None:
        sock = self._sock
        if sock is not None and sock.fileno() != -1:
            # The plain socket method: SSLSocket.shutdown would also drop its SSL object
            # under the feet of the thread using it.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _release(self) -> None:
        if self._imap4 is not None:
            with contextlib.suppress(OSError):
                self._imap4.file.close()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    def _timeout_error(self, op: _Op, limit: float) -> ImapError:
        port = self.settings.port
        if op is _Op.GREETING:
            return ImapError(
                Code.GREETING_TIMEOUT,
                f"Connected to port {port}, but the server sent no greeting within {limit:g} s.",
            )
        if op is _Op.HANDSHAKE and self._imap4 is None:
            # Implicit TLS: the server has not said a single byte yet.
            return ImapError(
                Code.GREETING_TIMEOUT,
                f"Connected to port {port}, but the server did not answer the TLS handshake "
                f"within {limit:g} s.",
            )
        if op is _Op.HANDSHAKE:
            return ImapError(
                Code.TLS_HANDSHAKE_FAILED,
                f"The server accepted STARTTLS but did not complete the TLS handshake within "
                f"{limit:g} s.",
            )
        return ImapError(
            Code.TEST_TIMEOUT, f"The server did not answer {op.value} within {limit:g} s."
        )

    def _text(self, data: object) -> str:
        """Server text for a message, never containing the password."""
        if isinstance(data, list | tuple):
            data = data[0] if data else b""
        return self._scrub(server_text(data))

    def _scrub(self, text: str) -> str:
        # Only where it can be the password: a one-letter password must not turn every
        # such letter of the server's message into stars (see postroom.redact).
        return redact(text, self.settings.password or "")

    def _translate(self, op: _Op, exc: BaseException) -> ImapError:
        """The one boundary where library and socket errors become :class:`ImapError`."""
        s = self.settings
        during = op.value
        if isinstance(exc, ImapError):
            return exc
        if isinstance(exc, _LimitExceeded):
            return ImapLimitExceeded(Code.PROTOCOL_ERROR, str(exc), detail=f"during {during}")
        if isinstance(exc, HostNotFound):
            return ImapError(
                Code.DNS_NOT_FOUND, f"The host name '{s.host}' was not found.", detail=exc.detail
            )
        if isinstance(exc, BlockedByPolicy):
            return ImapError(
                Code.BLOCKED_BY_POLICY,
                f"'{s.host}' port {s.port} is blocked by postroom's network policy.",
                detail=" ".join(d.reason for d in exc.denied),
            )
        if isinstance(exc, ResolveTimeout):
            return ImapError(Code.DNS_NOT_FOUND, f"Resolving '{s.host}' timed out.")
        if isinstance(exc, ConnectFailed):
            return ImapError(Code(exc.code), exc.message)
        if op is _Op.RESOLVE and isinstance(exc, ValueError):
            return ImapError(Code.DNS_NOT_FOUND, str(exc))
        if op is _Op.HANDSHAKE and isinstance(exc, OSError | ssl.CertificateError):
            failure = classify_tls_error(exc)
            return ImapError(
                Code(failure.code),
                f"TLS with {s.host} port {s.port} failed: {failure.detail}.",
                detail=failure.detail,
            )
        if isinstance(exc, LoginError):
            if isinstance(exc.__context__, imaplib.IMAP4.abort):
                return self._translate(op, exc.__context__)
            text = self._text(str(exc))
            return ImapError(
                Code.AUTH_FAILED,
                f"The server refused the login for '{s.username}': {text}",
                detail=text,
            )
        if isinstance(exc, imaplib.IMAP4.abort):
            text = self._text(str(exc))
            if "EOF" in text:
                return ImapError(
                    Code.PROTOCOL_ERROR,
                    f"The server closed the connection during {during}.",
                    detail=text,
                )
            return ImapError(
                Code.PROTOCOL_ERROR,
                f"The server's answer during {during} is not IMAP: {text}",
                detail=text,
            )
        if isinstance(exc, imaplib.IMAP4.error):
            text = self._text(str(exc))
            if op is _Op.SELECT:
                return ImapError(
                    Code.IMAP_FOLDER_MISSING,
                    f"The server could not open this folder: {text}",
                    detail=text,
                )
            if op is _Op.GREETING:
                return ImapError(
                    Code.PROTOCOL_ERROR, f"The server refused the session: {text}", detail=text
                )
            return ImapError(
                Code.PROTOCOL_ERROR, f"The server refused {during}: {text}", detail=text
            )
        if isinstance(exc, OSError):
            why = exc.strerror or str(exc) or type(exc).__name__
            return ImapError(
                Code.PROTOCOL_ERROR, f"The connection failed during {during} ({why}).", detail=why
            )
        # IMAPClient's response parser raises assorted errors on malformed answers.
        text = self._text(f"{type(exc).__name__}: {exc}")
        return ImapError(
            Code.PROTOCOL_ERROR,
            f"Could not understand the server's answer during {during} ({text}).",
            detail=text,
        )
