"""OAuth2 errors. Messages never contain a token, a code verifier or a client secret.

::

    PostroomError
    ├── TokenError(config, error, description)   no access token; ``error`` is the provider's
    │                                            code (``invalid_grant``…) or ours
    │                                            (``consent_required``, ``temporarily_unavailable``,
    │                                            ``network_error``); ``consent_needed`` and
    │                                            ``transient`` say what to do about it
    └── Conflict
        └── FlowError(error, description)        an authorization that can't complete: unknown,
                                                 used or expired ``state``, denied consent,
                                                 device code expired, still pending
"""

from __future__ import annotations

from postroom.errors import Conflict, PostroomError

__all__ = ["FlowError", "TokenError", "clean_text"]


def clean_text(value: object, limit: int = 300) -> str:
    """A provider's text made safe to show: one line, printable, bounded."""
    text = "".join(c if c.isprintable() else " " for c in str(value or "")).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TokenError(PostroomError):
    """No access token for configuration ``config``.

    ``consent_needed``: a person must connect (again) — deliveries of profiles using it are
    paused until then. ``transient``: the provider or network failed; retried with backoff.
    """

    code = "oauth2_token_failed"

    def __init__(
        self,
        message: str,
        *,
        config: str,
        error: str,
        description: str = "",
        consent_needed: bool = False,
        transient: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.config = config
        self.error = clean_text(error, 100)
        self.description = clean_text(description)
        self.consent_needed = consent_needed
        self.transient = transient
        self.status = status

    @property
    def detail(self) -> str:
        """``error=invalid_grant; error_description=…`` for a diagnosis step."""
        text = f"error={self.error}"
        return text + (f"; error_description={self.description}" if self.description else "")


class FlowError(Conflict):
    """An authorization (browser or device) that cannot complete, and why."""

    code = "oauth2_flow_failed"

    def __init__(self, message: str, *, error: str, description: str = "") -> None:
        super().__init__(message)
        self.error = clean_text(error, 100)
        self.description = clean_text(description)
