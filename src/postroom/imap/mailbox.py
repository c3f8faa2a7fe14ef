"""Reading a mailbox for the inbound sync: one :class:`MailboxSession` per listener.

:class:`MailboxSession` adds to :class:`~postroom.imap.client.ImapSession` what a sync
needs: SELECT read-write with UIDVALIDITY/UIDNEXT, ``UID SEARCH UID n:*`` done correctly
(``n:*`` also matches the highest UID when ``n`` is beyond it, so results are filtered),
FETCH of sizes and bodies by explicit UIDs (IMAPClient 4.1 cannot take ``"n:*"`` strings
for FETCH, mjs/imapclient#666), IDLE with a deadline, and the ``processed`` actions
(\\Seen, MOVE or COPY+EXPUNGE, delete+EXPUNGE).

Every operation runs on the session's own thread through ``ImapSession._call``, so errors
still pass the one boundary (``ImapSession._translate``) and reads stay bounded by
:class:`~postroom.imap.client.ImapLimits`. A literal over the limit raises
:class:`~postroom.imap.client.ImapLimitExceeded` and closes the session.
"""

from __future__ import annotations

import imaplib
import re
import select
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from postroom.diagnostics.steps import Code
from postroom.imap.client import _UNSET, ImapError, ImapSession, _Op, _Unset

__all__ = ["MailboxSession", "MailboxStatus", "MessageSize"]

_MESSAGE_ID = re.compile(rb"<[^<>\s]+>")
# UIDs searched per SEARCH command: the answer is one line, bounded by
# ImapLimits.max_line_bytes (1 MiB holds ~90,000 ten-digit UIDs).
_SEARCH_WINDOW = 50_000
# Extra time an IDLE call may take beyond its wait: ending IDLE is one round trip.
_IDLE_MARGIN_S = 30.0
_NEW_MAIL = frozenset({"EXISTS", "RECENT"})
_SLOW_LINK_BPS = 100 * 1024  # the slowest transfer rate a fetch is given time for
_T = TypeVar("_T")


@dataclass(frozen=True)
class MailboxStatus:
    """What SELECT said: ``uidnext`` is None when the server did not say (allowed in rev1)."""

    folder: str
    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True)
class MessageSize:
    """A message's RFC822.SIZE and the Message-ID from its header (None when absent)."""

    uid: int
    size: int
    message_id: str | None


class MailboxSession(ImapSession):
    """An :class:`ImapSession` with the operations of the inbound sync. Raises ImapError."""

    server_capabilities: tuple[str, ...] = ()

    async def open_mailbox(self, folder: str) -> MailboxStatus:
        """SELECT ``folder`` read-write; returns its UIDVALIDITY, UIDNEXT and size.

        Also learns the capabilities the server announces after login (MOVE, UIDPLUS...).
        Raises ``imap_folder_missing`` when the folder cannot be opened.
        """
        self._require_imap4()
        client = self._client

        def run() -> tuple[tuple[str, ...], dict[bytes, Any]]:
            caps = tuple(_text(c).upper() for c in client.capabilities())
            self._forget_untagged()
            return caps, client.select_folder(folder, readonly=False)

        caps, response = await self._call(_Op.SELECT, run)
        self.server_capabilities = caps or self.capabilities
        if b"UIDVALIDITY" not in response:
            raise ImapError(
                Code.PROTOCOL_ERROR,
                f"The server opened '{folder}' without a UIDVALIDITY, so postroom cannot tell "
                "which messages it has already seen.",
            )
        uidnext = response.get(b"UIDNEXT")
        return MailboxStatus(
            folder=folder,
            uidvalidity=int(response[b"UIDVALIDITY"]),
            uidnext=int(uidnext) if uidnext is not None else None,
            exists=int(response.get(b"EXISTS", 0)),
        )

    @property
    def is_open(self) -> bool:
        """False once the connection was closed (after a network or protocol error too)."""
        return not self._closed and self._sock is not None

    @property
    def supports_idle(self) -> bool:
        return "IDLE" in (self.server_capabilities or self.capabilities)

    async def new_uids(self, after: int, *, uidnext: int | None = None) -> list[int]:
        """UIDs above ``after`` in the selected folder, ascending (at most one window).

        With ``uidnext`` known, searches bounded windows (``UID a:b``) so that one answer
        never holds more than ~50,000 UIDs; ``UID n:*`` only for the last window.
        """
        self._require_imap4()
        client = self._client
        start = after + 1

        def search(criteria: str) -> list[int]:
            return [int(u) for u in client.search(["UID", criteria])]

        while uidnext is not None and uidnext - start > _SEARCH_WINDOW:
            end = start + _SEARCH_WINDOW - 1
            found = await self._op(_Op.SEARCH, partial(search, f"{start}:{end}"))
            hits = sorted(u for u in found if start <= u <= end)
            if hits:
                return hits
            start = end + 1
        found = await self._op(_Op.SEARCH, partial(search, f"{start}:*"))
        # "n:*" with n above the highest UID is "highest:n" and matches the highest message.
        return sorted(u for u in found if u >= start)

    async def fetch_sizes(self, uids: Sequence[int]) -> dict[int, MessageSize]:
        """RFC822.SIZE and Message-ID of ``uids``; expunged UIDs are missing from the result."""
        self._require_imap4()
        if not uids:
            return {}
        client = self._client
        wanted = list(uids)

        def run() -> dict[int, Any]:
            return dict(
                client.fetch(wanted, ["RFC822.SIZE", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
            )

        response = await self._op(_Op.FETCH, run)
        out: dict[int, MessageSize] = {}
        for uid, data in response.items():
            size = data.get(b"RFC822.SIZE")
            if size is None:
                continue
            header = next(
                (v for k, v in data.items() if k.upper().startswith(b"BODY[HEADER")), None
            )
            found = _MESSAGE_ID.search(header) if isinstance(header, bytes) else None
            message_id = found.group(0).decode("ascii", "replace") if found else None
            out[int(uid)] = MessageSize(uid=int(uid), size=int(size), message_id=message_id)
        return out

    async def fetch_bodies(self, uids: Sequence[int], *, size: int = 0) -> dict[int, bytes]:
        """The complete messages (BODY.PEEK[]: fetching sets no \\Seen flag).

        ``size`` (their total RFC822.SIZE) extends the session's timeout by one second per
        100 KiB, so that a large message on a slow link is not cut off at the time one
        command may take.
        """
        self._require_imap4()
        if not uids:
            return {}
        client = self._client
        wanted = list(uids)

        def run() -> dict[int, Any]:
            return dict(client.fetch(wanted, ["BODY.PEEK[]"]))

        timeout = None if self.timeout is None else self.timeout + size / _SLOW_LINK_BPS
        response = await self._op(_Op.FETCH, run, timeout=timeout)
        # A UID missing here was expunged meanwhile (or the server could not read it).
        return {
            int(uid): data[b"BODY[]"]
            for uid, data in response.items()
            if isinstance(data.get(b"BODY[]"), bytes)
        }

    async def noop(self) -> None:
        """NOOP: keeps the connection alive and lets the server report changes."""
        self._require_imap4()
        client = self._client
        await self._op(_Op.NOOP, client.noop)

    async def mark_seen(self, uids: Sequence[int]) -> None:
        """Set \\Seen on ``uids``."""
        self._require_imap4()
        client = self._client
        wanted = list(uids)
        await self._op(_Op.STORE, lambda: client.add_flags(wanted, [b"\\Seen"], silent=True))

    async def move(self, uids: Sequence[int], folder: str) -> None:
        """Move ``uids`` to ``folder``: MOVE (RFC 6851) or else COPY, \\Deleted, EXPUNGE."""
        self._require_imap4()
        client = self._client
        wanted = list(uids)
        caps = self.server_capabilities

        def run() -> None:
            if "MOVE" in caps:
                client.move(wanted, folder)
                return
            client.copy(wanted, folder)
            self._delete_now(wanted, caps)

        await self._op(_Op.MOVE, run)

    async def delete(self, uids: Sequence[int]) -> None:
        """Delete ``uids``: \\Deleted, then UID EXPUNGE (UIDPLUS) or else EXPUNGE.

        Without UIDPLUS a plain EXPUNGE also removes other messages flagged \\Deleted in the
        folder; that is the only way such a server offers.
        """
        self._require_imap4()
        wanted = list(uids)
        caps = self.server_capabilities
        await self._op(_Op.EXPUNGE, lambda: self._delete_now(wanted, caps))

    async def idle(self, wait: float) -> bool:
        """IDLE (RFC 2177) for up to ``wait`` seconds; True as soon as new mail is announced.

        Returns False when the time is up without news. The caller re-issues IDLE well within
        the 29 minutes after which servers and firewalls drop an idle connection. Cancelling
        the call closes the session (there is no way to leave IDLE from another thread).
        """
        self._require_imap4()
        if not self.supports_idle:
            raise ImapError(Code.PROTOCOL_ERROR, "The server does not offer IDLE.")
        margin = _IDLE_MARGIN_S if self.timeout is None else min(self.timeout, _IDLE_MARGIN_S)
        return await self._call(_Op.IDLE, lambda: self._idle(wait), timeout=wait + margin)

    # -- on the session's thread ----------------------------------------------------------------

    async def _op(
        self, op: _Op, fn: Callable[[], _T], *, timeout: float | None | _Unset = _UNSET
    ) -> _T:
        def run() -> _T:
            self._forget_untagged()
            return fn()

        return await self._call(op, run, timeout=timeout)

    def _forget_untagged(self) -> None:
        # imaplib keeps every unsolicited response (EXISTS, EXPUNGE, FETCH flags...) until
        # someone asks for it; over days of IDLE that would grow without bound.
        if self._imap4 is not None:
            self._imap4.untagged_responses.clear()

    def _delete_now(self, uids: list[int], caps: tuple[str, ...]) -> None:
        client = self._client
        client.add_flags(uids, [b"\\Deleted"], silent=True)
        if "UIDPLUS" in caps:
            client.uid_expunge(uids)
        else:
            client.expunge()

    def _idle(self, wait: float) -> bool:
        imap4: Any = self._imap4  # imaplib's private API, as IMAPClient uses it for IDLE
        sock = self._sock
        assert imap4 is not None and sock is not None
        deadline = time.monotonic() + wait
        self._forget_untagged()
        tag = imap4._command("IDLE")
        while True:  # until "+ idling"; new mail may be reported before it
            if imap4._get_response() is None:
                break
            if imap4.tagged_commands.get(tag):
                typ, data = imap4.tagged_commands.pop(tag)
                raise imaplib.IMAP4.error(f"IDLE failed: {typ} {data}")
        news = self._news(imap4)
        while not news and not imap4.tagged_commands.get(tag):
            if _app_data_ready(sock, imap4):
                imap4._get_response()
                news = self._news(imap4)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if _poll(sock, remaining) and _at_eof(sock):
                raise imaplib.IMAP4.abort("EOF during IDLE: the server closed the connection")
        if not imap4.tagged_commands.get(tag):
            imap4.send(b"DONE\r\n")
        while not imap4.tagged_commands.get(tag):
            imap4._get_response()
        typ, data = imap4.tagged_commands.pop(tag)
        self._forget_untagged()
        if typ != "OK":
            raise imaplib.IMAP4.error(f"IDLE failed: {typ} {data}")
        return news

    def _news(self, imap4: Any) -> bool:
        names = set(imap4.untagged_responses)
        if "BYE" in names:
            # "EOF" makes the one error boundary report a closed connection, which this is
            raise imaplib.IMAP4.abort("EOF: the server ended the session (BYE)")
        self._forget_untagged()
        return bool(names & _NEW_MAIL)


def _text(value: object) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _app_data_ready(sock: socket.socket, imap4: Any) -> bool:
    """Whether a response can be read without waiting (already decrypted or buffered)."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    # peek() returns buffered bytes without reading; with an empty buffer it reads once,
    # which must not block: the socket is non-blocking just for this call.
    sock.setblocking(False)
    try:
        return bool(imap4._reader.peek(1))
    except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return False
    finally:
        sock.setblocking(True)


def _poll(sock: socket.socket, timeout: float) -> bool:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _at_eof(sock: socket.socket) -> bool:
    """Whether the peer closed the connection; peeks at the raw socket (TLS records too)."""
    try:
        data = socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    return data == b""
