"""Strict address and header-text checks (pure)."""

from __future__ import annotations

import pytest

from postroom.addresses import check_addr_spec, check_hostname, check_single_line


@pytest.mark.parametrize(
    "good",
    ["a@example.com", "first.last+tag@sub.example.co.uk", "o'brien@example.org",
     "user@[127.0.0.1]", "üser@exämple.de", "x@xn--bcher-kva.example"],
)  # fmt: skip
def test_valid_addresses(good: str) -> None:
    assert check_addr_spec(good) is None


@pytest.mark.parametrize(
    "bad",
    [
        "alice@example.org)<bob@example.com>",  # CVE-2023-27043: parseaddr keeps only alice
        "Alice <alice@example.org>",
        "alice@example.org, bob@example.org",
        "a@b@c.com",
        "alice@example.org\r\nBcc: x@y.z",
        "alice",
        "@example.org",
        "alice@",
        "alice@localhost",
        "a..b@example.org",
        ".a@example.org",
        '"quoted"@example.org',
        "a@-example.org",
        "a@[999.1.1.1]",
        "x" * 65 + "@example.org",
    ],
)
def test_invalid_addresses(bad: str) -> None:
    assert check_addr_spec(bad) is not None


@pytest.mark.parametrize(
    "bad", ["a\nb", "a\rb", "a\x00b", "a\tb", "=?UTF-8?Q?=0A?=Bcc: x", "a\u2028b"]
)
def test_single_line_refuses_controls_and_encoded_words(bad: str) -> None:
    assert check_single_line(bad) is not None


@pytest.mark.parametrize(
    "good", ["smtp.example.com", "127.0.0.1", "::1", "[::1]", "mail-1.example"]
)
def test_hostnames(good: str) -> None:
    assert check_hostname(good) is None


@pytest.mark.parametrize("bad", ["", "a b", "a\r\nb", "-bad.example", "a..b", "x" * 254, "::zz"])
def test_bad_hostnames(bad: str) -> None:
    assert check_hostname(bad) is not None
