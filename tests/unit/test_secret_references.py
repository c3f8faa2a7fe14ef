"""Who may store which env: reference (pure: variable names only, no file system)."""

from __future__ import annotations

import pytest

from postroom.secrets import REFUSED_FOR_ADMINS, SecretReferences


@pytest.mark.parametrize(
    ("value", "operator", "admin"),
    [
        ("plain-password", True, True),
        ("env:QA_SMTP_PW", True, True),  # on the list by its prefix pattern
        ("env:QA_SMTPX", True, False),  # the pattern is QA_SMTP_*, not QA_SMTP*
        ("env:EXACT", True, True),
        ("env:EXACTLY", True, False),
        ("env:HOME", True, False),
        ("env:", True, False),
        ("env:POSTROOM_SECRET_KEYS", False, False),  # never, even though POSTROOM_* is listed
        ("env:POSTROOM_DATABASE_URL", False, False),
        ("env:POSTROOM_OTHER", True, True),
    ],
)
def test_env_references_by_surface(value: str, operator: bool, admin: bool) -> None:
    refs = SecretReferences(allowed_env=["QA_SMTP_*", "EXACT", " POSTROOM_* "])
    assert (refs.refusal(value, operator=True) is None) is operator
    refused = refs.refusal(value, operator=False)
    assert (refused is None) is admin
    if refused is not None:
        assert refused == REFUSED_FOR_ADMINS  # one message, whatever the reason


def test_without_an_allow_list_admins_get_no_reference() -> None:
    refs = SecretReferences()
    assert refs.refusal("env:ANYTHING", operator=False) == REFUSED_FOR_ADMINS
    assert "own secret keys" in (refs.refusal("env:POSTROOM_SECRET_KEYS", operator=True) or "")
