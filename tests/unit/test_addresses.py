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


EDGES = [
    "a@b.c", "a@b", "a..b@c.d", ".a@b.c", "a.@b.c", "a@-b.c", "a@b-.c", "a@b..c", "a@b.c.",
    "a@" + "b" * 63 + ".c", "a@" + "b" * 64 + ".c", "x" * 64 + "@b.c", "x" * 65 + "@b.c",
    "a@" + ".".join(["b" * 60] * 4) + ".cc", "a@[1.2.3.4]", "é@b.c", "a@b.c\n", "a@b.c ",
    "a b@c.d", "a@b@c.d", "{}~|@x-y.z0", "a@b_c.d",
]  # fmt: skip


def test_the_fast_address_check_agrees_with_the_full_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-regex path for plain ASCII addresses must accept nothing the full check
    refuses, and refuse with the full check's reason."""
    import random
    import re

    from postroom import addresses

    rng = random.Random(7)
    alphabet = "abcdeAB019.-@_+!é \n\t[]:\x00"

    def part(k: int) -> str:
        return "".join(rng.choices(alphabet, k=rng.randint(0, k)))

    # noise, and address-shaped strings with noise in their parts
    cases = EDGES + [part(14) for _ in range(10000)]
    cases += [f"{part(5)}x{part(3)}@{part(4)}y.{part(3)}z" for _ in range(10000)]
    fast = [addresses.check_addr_spec(v) for v in cases]
    monkeypatch.setattr(addresses, "_PLAIN_ADDR_RE", re.compile(r"(?!)"))  # never matches
    full = [addresses.check_addr_spec(v) for v in cases]
    assert fast == full
    assert sum(r is None for r in full) > 100  # plenty of valid ones among them
