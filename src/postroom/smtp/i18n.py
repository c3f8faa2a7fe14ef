"""Internationalized addresses (pure): IDNA for domains, SMTPUTF8 for local parts.

A non-ASCII *domain* (``bob@exämple.test``) goes out as its IDNA A-label
(``bob@xn--exmple-cua.test``), which every server takes. A non-ASCII *local part*
(``用户@example.test``) has no ASCII form: it needs RFC 6531's ``SMTPUTF8`` on MAIL FROM,
raw UTF-8 in the envelope and the headers (RFC 6532), and a server that offers it.
"""

from __future__ import annotations

from functools import lru_cache

import idna

__all__ = ["ascii_domain", "needs_smtputf8"]


@lru_cache(maxsize=4096)
def ascii_domain(address: str) -> str:
    """``address`` with its domain as an IDNA A-label; raises ValueError with a reason when
    the domain is not a valid internationalized domain name."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        encoded = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(
            f"'{address}' has a domain that is not a valid internationalized domain name ({exc})"
        ) from None
    return f"{local}@{encoded}"


def needs_smtputf8(sender: str, recipients: list[str], raw: bytes) -> bool:
    """Does this transaction need SMTPUTF8: a UTF-8 address in the envelope or a UTF-8
    header? (Bodies are always 7-bit: quoted-printable or base64.)"""
    # on the delivery path for every message: no generator (a join is ~4x cheaper)
    rcpts = recipients[0] if len(recipients) == 1 else "".join(recipients)
    return not (raw.isascii() and sender.isascii() and rcpts.isascii())
