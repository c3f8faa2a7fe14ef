"""Receiving mail: the IMAP sync, its storage, subscribers, bounces and health.

Services (I/O): :mod:`.service` (``Inbound``: the facade ``app.inbound``), :mod:`.runner`
(a listener per receiving profile), :mod:`.listener` (lease, connection, IDLE/poll),
:mod:`.sync` (new mail in, subscribers, processed action), :mod:`.parsing` and
:mod:`.parse_child` (each message parsed in a separate process with hard limits), :mod:`.subscribers` and
:mod:`.webhooks` (handing messages over), :mod:`.store`, :mod:`.mailboxes`,
:mod:`.outbox_bounces` and :mod:`.health` (database). Pure: :mod:`.schemas`,
:mod:`.signing`, :mod:`.text`, :mod:`.bounces`. Tables: :mod:`.tables`.
"""
