"""The IMAP connection test: resolve, connect, TLS or STARTTLS, CAPABILITY, login, SELECT.

Steps, in order::

    security tls:       resolve, connect, tls (handshake + greeting), capability, auth, select
    security starttls:  resolve, connect, greeting, starttls, tls, capability, auth, select
    security none:      resolve, connect, greeting, capability, auth, select

``auth`` is left out when the profile's auth is ``none``; with ``oauth2`` an ``oauth2`` step
(getting an access token) comes before it. The IMAP adapter
(:mod:`postroom.imap.client`) already maps every library error to a diagnosis code; this
module adds what only a diagnosis needs: telling a wrong port apart from a slow server by
looking at the port again (:func:`postroom.net.connect.sniff`), the folder list when the
folder is missing, and one cap on the whole test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from postroom.diagnostics.recorder import Abort, Recorder, StepFailed, StepHandle
from postroom.diagnostics.steps import Code, Diagnosis
from postroom.errors import PostroomError
from postroom.imap.client import ImapError, ImapLimits, ImapSession
from postroom.net.connect import Sniffed, sniff
from postroom.net.policy import NetPolicy
from postroom.oauth2.access import bearer_for
from postroom.oauth2.errors import TokenError
from postroom.profiles.schemas import AuthMethod, ImapSettings, Security

__all__ = ["probe_imap"]

_T = TypeVar("_T")

# A mail server greets (or answers a TLS ClientHello) within milliseconds; when it has not
# after this long, look at the port on a second connection while still waiting on the first.
_SNIFF_AFTER_S = 1.0
_PROBE_LINE = b"a1 CAPABILITY\r\n"
_FOLDERS_SHOWN = 8
# The test reads greetings, capabilities and a folder list, never a message: a few MiB is
# plenty, and keeps what a hostile server can make it hold small.
_LIMITS = ImapLimits(max_line_bytes=1 << 20, max_literal_bytes=1 << 20, max_response_bytes=8 << 20)


async def probe_imap(imap: ImapSettings, *, policy: NetPolicy, cap_s: float = 30.0) -> Diagnosis:
    """Test the IMAP settings step by step; the diagnosis says which step failed and why.

    ``imap.connect_timeout_s`` bounds each network step (``None``: only the cap applies);
    ``cap_s`` bounds the whole test. When the cap runs out, the running step fails with
    ``connect_timeout`` (connect), ``greeting_timeout`` (greeting, or implicit TLS),
    ``tls_handshake_failed`` (TLS after STARTTLS), ``dns_not_found`` (resolve) or else
    ``test_timeout``. Never raises for a server fault; the password appears nowhere.
    """
    rec = Recorder("imap", "imap", imap.host, imap.port, imap.security.value)
    session = ImapSession(imap, policy=policy, timeout=imap.connect_timeout_s, limits=_LIMITS)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(cap_s):
            await _steps(rec, session, imap)
        # Outside the cap: a slow goodbye must not turn a passed test into a failed one.
        await session.logout()
    except Abort:
        pass
    except TimeoutError:
        step = rec.current or "test"
        rec.fail(
            step,
            _cap_code(step, imap.security),
            f"The test ran out of time after {time.perf_counter() - started:.0f} s "
            f"during '{step}'.",
        )
    finally:
        session.close()
    return rec.finish()


def _cap_code(step: str, security: Security) -> Code:
    # The hint should match the step that was running when the test ran out of time.
    if step == "resolve":
        return Code.DNS_NOT_FOUND
    if step == "connect":
        return Code.CONNECT_TIMEOUT
    if step == "greeting" or (step == "tls" and security is Security.TLS):
        return Code.GREETING_TIMEOUT
    if step == "tls":
        return Code.TLS_HANDSHAKE_FAILED
    return Code.TEST_TIMEOUT


@asynccontextmanager
async def _step(rec: Recorder, name: str) -> AsyncIterator[StepHandle]:
    """A recorder step in which an :class:`ImapError` is the step's failure."""
    async with rec.step(name) as handle:
        try:
            yield handle
        except ImapError as exc:
            raise StepFailed(exc.code, exc.message, detail=exc.detail) from None


async def _steps(rec: Recorder, session: ImapSession, imap: ImapSettings) -> None:
    proxy = session.policy.proxy
    if proxy is not None:
        # one step: the proxy resolves the name and connects (docs/profiles.md, "Proxies")
        async with _step(rec, "proxy") as st:
            address = await session.connect()
            st.detail = f"tunnel to {imap.host} port {imap.port} through the {proxy.shown}"
    else:
        async with _step(rec, "resolve") as st:
            st.detail = ", ".join(await session.resolve())
        async with _step(rec, "connect") as st:
            address = await session.connect()
            st.detail = f"connected to {address} port {imap.port}"

    if imap.security is Security.TLS:
        async with _step(rec, "tls") as st:
            tls = await _watching_port(session.handshake(), address, imap)
            greeting = await session.greet()
            st.detail = f"{tls}; {greeting}"
    else:
        async with _step(rec, "greeting") as st:
            st.detail = await _watching_port(session.greet(), address, imap)
        if imap.security is Security.STARTTLS:
            async with _step(rec, "starttls") as st:
                await session.starttls()
                st.detail = "offered and accepted"
            async with _step(rec, "tls") as st:
                st.detail = await session.handshake()

    async with _step(rec, "capability") as st:
        st.detail = " ".join(await session.capability())

    if imap.auth is AuthMethod.OAUTH2:
        async with _step(rec, "oauth2") as st:
            # fetched here for its own step; login() then takes it from the token cache
            try:
                token = await bearer_for(imap.oauth2_config or "", ignore_backoff=True)
            except TokenError as exc:
                raise StepFailed(Code.OAUTH2_TOKEN_FAILED, exc.message, detail=exc.detail) from None
            except PostroomError as exc:  # NotFound, an undecryptable stored token
                raise StepFailed(Code.OAUTH2_TOKEN_FAILED, exc.message) from None
            st.detail = token.describe()
    if imap.auth is not AuthMethod.NONE:
        async with _step(rec, "auth") as st:
            st.detail = await session.login()

    async with _step(rec, "select") as st:
        if not session.authenticated:
            raise StepFailed(
                Code.AUTH_FAILED,
                "The server requires a login to open a folder, but auth is 'none': set auth "
                "to 'basic' with the mailbox's username and password.",
            )
        try:
            count = await session.select(imap.folder)
        except ImapError as exc:
            if exc.code is not Code.IMAP_FOLDER_MISSING:
                raise
            raise StepFailed(
                Code.IMAP_FOLDER_MISSING,
                f"The folder '{imap.folder}' does not exist in this mailbox "
                f"({exc.detail.rstrip('.')}).",
                detail=await _folders(session),
            ) from None
        st.detail = f"{imap.folder}: {count} message{'' if count == 1 else 's'}"


async def _folders(session: ImapSession) -> str:
    try:
        names = await session.list_folders()
    except ImapError as exc:
        return f"the folder list is unavailable too: {exc.message}"
    if not names:
        return "the server lists no folders"
    # INBOX first: it is the one most people mean.
    names.sort(key=lambda n: (n.upper() != "INBOX", n.casefold()))
    shown = ", ".join(names[:_FOLDERS_SHOWN])
    more = len(names) - _FOLDERS_SHOWN
    return f"existing folders: {shown}" + (f" and {more} more" if more > 0 else "")


async def _watching_port(
    operation: Coroutine[Any, Any, _T], address: str, imap: ImapSettings
) -> _T:
    """Await the greeting or the implicit-TLS handshake; tell a wrong port from a slow server.

    A port that speaks the other TLS mode, HTTP or SMTP either stays silent or answers with
    something that is not IMAP. Either way a second look at the port, on a fresh connection,
    names the mistake: it starts when the server has been silent for a moment (while the
    first connection keeps waiting) or when the operation failed.
    """
    task = asyncio.create_task(operation)
    sniffer: asyncio.Task[Sniffed] | None = None
    try:
        done, _ = await asyncio.wait({task}, timeout=_SNIFF_AFTER_S)
        if not done:
            sniffer = asyncio.create_task(sniff(address, imap.port, probe_line=_PROBE_LINE))
            await asyncio.wait({task, sniffer}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                verdict = _verdict(sniffer.result(), imap)
                if verdict is not None:
                    raise verdict
                # Inconclusive (silent, or IMAP after all): a slow server; wait on.
        try:
            return await task
        except ImapError as exc:
            if exc.code not in _SNIFF_WORTHY:
                raise
            if sniffer is None:
                sniffer = asyncio.create_task(sniff(address, imap.port, probe_line=_PROBE_LINE))
            verdict = _verdict(await sniffer, imap)
            if verdict is None:
                raise
            raise verdict from None
    finally:
        for pending in (task, sniffer):
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, ImapError):
                    await pending


_SNIFF_WORTHY = (Code.GREETING_TIMEOUT, Code.TLS_WRONG_MODE, Code.PROTOCOL_ERROR)


def _verdict(found: Sniffed, imap: ImapSettings) -> StepFailed | None:
    """What the sniffed port says about the failure, or None when it does not tell."""
    port, security = imap.port, imap.security.value
    if found.kind == "tls" and imap.security is not Security.TLS:
        return StepFailed(
            Code.TLS_WRONG_MODE,
            f"The server on port {port} speaks TLS from the first byte, but security is "
            f"'{security}'.",
        )
    if found.kind == "imap" and imap.security is Security.TLS:
        return StepFailed(
            Code.TLS_WRONG_MODE,
            f"The server on port {port} speaks plaintext IMAP first ({found.first_line!r}), "
            "but security is 'tls'.",
            detail=found.first_line,
        )
    if found.kind in ("http", "smtp", "other"):
        what = {"http": " (it is a web server)", "smtp": " (it is an SMTP server)"}
        return StepFailed(
            Code.PROTOCOL_ERROR,
            f"The server on port {port} is not an IMAP server{what.get(found.kind, '')}; "
            f"it answered: {found.first_line!r}",
            detail=found.first_line,
        )
    return None
