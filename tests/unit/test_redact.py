"""Redaction judges each occurrence: a short secret only where it can be the secret."""

from __future__ import annotations

import pytest

from postroom.redact import MASK, redact, redact_all

SERVER_TEXT = "[AUTHENTICATIONFAILED] Authentication failed: bad password or account name"


def test_a_one_letter_password_does_not_mangle_the_server_message() -> None:
    assert redact(SERVER_TEXT, "a") == SERVER_TEXT
    assert redact(SERVER_TEXT, "ai") == SERVER_TEXT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("LOGIN alice a", f"LOGIN alice {MASK}"),
        ('LOGIN alice "a" failed', f'LOGIN alice "{MASK}" failed'),
        ("bad argument: a", f"bad argument: {MASK}"),
        ("(a)", f"({MASK})"),
        ("a", MASK),
    ],
)
def test_a_short_password_is_redacted_where_it_stands_alone(text: str, expected: str) -> None:
    assert redact(text, "a") == expected


def test_a_long_password_is_redacted_everywhere_and_whole() -> None:
    secret = "hunter2hunter2"
    text = f"NO x{secret}y {secret} '{secret}'"
    out = redact(text, secret)
    assert secret not in out and "hunter" not in out
    assert out == f"NO x{MASK}y {MASK} '{MASK}'"


def test_the_quoted_string_form_of_a_password_is_redacted_too() -> None:
    secret = 'pa"ss\\word'
    echoed = 'BAD LOGIN alice "pa\\"ss\\\\word"'  # as an IMAP quoted string writes it
    out = redact(echoed, secret)
    assert "pa" not in out.split("alice", 1)[1] and MASK in out


def test_symbols_only_password_is_redacted_even_next_to_letters() -> None:
    # no letter or digit at its edges: it cannot be part of a word, so every copy goes
    assert redact("x#!y", "#!") == f"x{MASK}y"


def test_without_standalone_only_quoted_or_long_values_go() -> None:
    message = "'ab' must be a single address such as ab@example.com"
    out = redact(message, "ab", mask="…", standalone=False, long_from=6)
    assert out == "'…' must be a single address such as ab@example.com"
    out = redact("x Sneaky-Value y", "Sneaky-Value", mask="…", standalone=False, long_from=6)
    assert out == "x … y"


def test_redact_all_replaces_the_longer_secret_first() -> None:
    assert redact_all("token abcdefgh", ["abc", "abcdefgh"]) == f"token {MASK}"


def test_empty_secret_changes_nothing() -> None:
    assert redact("some text", "") == "some text"
