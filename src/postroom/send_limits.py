"""Limits on what a caller may ask postroom to send (pure; from the settings).

They bound the work and storage one request can cause: a message to 100,000 recipients
was accepted once, and every page that listed it then weighed 46 MB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from postroom.errors import FieldError

__all__ = ["SendLimits"]


@dataclass(frozen=True)
class SendLimits:
    #: to, cc and bcc together, per message (POSTROOM_MAX_RECIPIENTS_PER_MESSAGE)
    recipients_per_message: int = 500
    #: recipients of one actionable email (POSTROOM_MAX_ACTION_RECIPIENTS)
    recipients_per_action: int = 100
    #: text, html and context (as JSON) of an action, each (POSTROOM_MAX_ACTION_BODY_BYTES)
    action_body_bytes: int = 512 * 1024

    @classmethod
    def from_settings(cls, settings: Any) -> SendLimits:
        return cls(
            recipients_per_message=settings.max_recipients_per_message,
            recipients_per_action=settings.max_action_recipients,
            action_body_bytes=settings.max_action_body_bytes,
        )

    def message_recipients(self, message: Any) -> FieldError | None:
        """Too many recipients in a message (a dict as given, or an OutgoingMessage),
        counted before the addresses are parsed (parsing 100,000 costs seconds)."""
        count = 0
        for key in ("to", "cc", "bcc"):
            value = message.get(key) if isinstance(message, dict) else getattr(message, key, None)
            count += len(value) if isinstance(value, list | tuple) else (1 if value else 0)
        if count > self.recipients_per_message:
            return FieldError(
                "to",
                f"{count} recipients (to, cc and bcc together); at most "
                f"{self.recipients_per_message} per message (POSTROOM_MAX_RECIPIENTS_PER_MESSAGE)",
            )
        return None

    def action_recipients(self, count: int) -> FieldError | None:
        if count > self.recipients_per_action:
            return FieldError(
                "to",
                f"{count} recipients; at most {self.recipients_per_action} per action "
                "(POSTROOM_MAX_ACTION_RECIPIENTS)",
            )
        return None

    def action_body(self, field: str, size: int) -> FieldError | None:
        if size > self.action_body_bytes:
            return FieldError(
                field,
                f"is {size:,} bytes; at most {self.action_body_bytes:,} "
                "(POSTROOM_MAX_ACTION_BODY_BYTES)",
            )
        return None
