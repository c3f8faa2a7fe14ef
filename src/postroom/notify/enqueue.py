"""Putting notification mail into the outbox inside the caller's own transaction.

A summary is exactly-once because its ``notify_digests`` row and its outbox message
commit together, and an event's record commits with its messages: the outbox's
:class:`~postroom.outbox.service.Stager` stages them on the caller's session.
"""

from __future__ import annotations

from postroom.outbox.service import Stager

__all__ = ["Stager"]
