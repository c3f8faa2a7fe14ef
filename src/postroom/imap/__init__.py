"""Receiving mail over IMAP.

- :mod:`postroom.imap.client` (I/O): :class:`~postroom.imap.client.ImapSession`, one IMAP
  connection that connects only to policy-checked addresses, verifies TLS against the host
  name, bounds what it reads, and raises :class:`~postroom.imap.client.ImapError` with a
  diagnosis code for every failure.
- :mod:`postroom.imap.mailbox` (I/O): :class:`~postroom.imap.mailbox.MailboxSession`, the
  same session with what the inbound sync needs (SELECT with UIDVALIDITY, UID search,
  batched FETCH by UID, IDLE, \\Seen/MOVE/delete).
- :mod:`postroom.imap.parse` (pure): bytes → a parsed message or a rejection, with limits.

Nothing is re-exported here, so that importing a pure module of this package (such as
``parse``) pulls in neither IMAPClient nor sockets.
"""
