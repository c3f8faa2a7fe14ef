"""What a server's EHLO offers for sending, and what it can't take (pure).

Checked before a message's bytes leave: one larger than the server's SIZE limit (RFC 1870)
would only be refused after the whole body crossed the wire (Exim answers 552 at the end
of DATA when SIZE was not declared), and one that needs SMTPUTF8 (RFC 6531) can't be sent
to a server that does not offer it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from postroom.smtp.i18n import needs_smtputf8

__all__ = ["SIZE", "SMTPUTF8", "Offers", "describe_size", "offers_from", "refuse_before_sending"]

#: MAIL FROM parameters a server offers, as bit flags (PipelinedSession's ``params``)
SIZE, SMTPUTF8 = 1, 2


@dataclass(frozen=True, slots=True)
class Offers:
    #: SIZE's limit in bytes; 0: SIZE without a limit; None: no SIZE
    size: int | None = None
    smtputf8: bool = False

    @property
    def params(self) -> int:
        return (SIZE if self.size is not None else 0) | (SMTPUTF8 if self.smtputf8 else 0)

    def mail_options(self, sender: str, recipients: list[str], raw: bytes) -> list[str]:
        """MAIL FROM parameters for one message, for aiosmtplib's ``sendmail``."""
        options = [f"SIZE={len(raw)}"] if self.size is not None else []
        if self.smtputf8 and needs_smtputf8(sender, recipients, raw):
            options.append("SMTPUTF8")
        return options


def offers_from(extensions: Mapping[str, str]) -> Offers:
    """From aiosmtplib's ``esmtp_extensions`` (lower-case keys, parameters as text)."""
    size: int | None = None
    if "size" in extensions:
        value = extensions["size"].strip()
        size = int(value) if value.isdigit() else 0
    return Offers(size=size, smtputf8="smtputf8" in extensions)


def describe_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MiB"
    return f"{size / 1024:.0f} KiB" if size >= 1024 else f"{size} bytes"


def refuse_before_sending(
    sender: str, recipients: list[str], raw: bytes, offers: Offers
) -> tuple[int, str] | None:
    """Why this server can't take the message, as the permanent reply it would give (RFC
    1870's 552, RFC 6531's 553 5.6.7) and a reason; or None. The message is not sent."""
    if offers.size and len(raw) > offers.size:
        return 552, (
            f"not sent: the message is {len(raw):,} bytes ({describe_size(len(raw))}), and the "
            f"server accepts at most {offers.size:,} ({describe_size(offers.size)}, its SIZE)"
        )
    if not offers.smtputf8 and needs_smtputf8(sender, recipients, raw):
        return 553, (
            "not sent: an address has non-ASCII characters before the '@', which needs "
            "SMTPUTF8 (RFC 6531), and the server does not offer it"
        )
    return None
