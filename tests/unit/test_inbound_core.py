"""Pure parts of inbound mail: signatures, retry timing, health staleness, storable text."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from postroom.errors import ValidationError
from postroom.inbound.schemas import InboundConfig, ListenerState, effective_state, next_retry
from postroom.inbound.signing import sign, signature_headers, verify
from postroom.inbound.text import clean
from postroom.inbound.webhooks import check_url
from postroom.net.policy import NetPolicy

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SECRET = "whsec_test-secret-0123456789"


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, b'{"a":1}') == f"v1={expected}"


def test_verify_accepts_fresh_signatures_only() -> None:
    body = b'{"subject":"hi"}'
    headers = signature_headers(SECRET, body, now=1_700_000_000)
    ts, sig = headers["X-Postroom-Timestamp"], headers["X-Postroom-Signature"]
    assert verify(SECRET, ts, body, sig, now=1_700_000_100)
    assert verify(SECRET, ts, body, f"v1=deadbeef, {sig}", now=1_700_000_100)  # rotation
    assert not verify(SECRET, ts, body + b" ", sig, now=1_700_000_100)
    assert not verify("whsec_other-secret-0123456789", ts, body, sig, now=1_700_000_100)
    assert not verify(SECRET, ts, body, sig, now=1_700_000_000 + 301)  # replayed later
    assert not verify(SECRET, "yesterday", body, sig, now=1_700_000_000)


def test_retries_back_off_exponentially_up_to_the_cap() -> None:
    config = InboundConfig(retry_initial_s=10, retry_max_s=100)
    waits = [(next_retry(n, NOW, config) - NOW).total_seconds() for n in (1, 2, 3, 4, 10)]
    for wait, base in zip(waits, (10, 20, 40, 80, 100), strict=True):
        assert 0.8 * base <= wait <= 1.2 * base


def test_a_state_not_refreshed_in_time_is_a_stale_error() -> None:
    fresh = NOW - timedelta(seconds=30)
    old = NOW - timedelta(seconds=300)
    assert effective_state("idle", fresh, NOW, stale_after_s=120) == (ListenerState.IDLE, False)
    assert effective_state("idle", old, NOW, stale_after_s=120) == (ListenerState.ERROR, True)
    assert effective_state("backoff", None, NOW, stale_after_s=120) == (ListenerState.ERROR, True)
    assert effective_state("stopped", old, NOW, stale_after_s=120) == (ListenerState.STOPPED, False)
    assert effective_state("???", fresh, NOW, stale_after_s=120)[0] is ListenerState.ERROR


def test_clean_makes_mail_text_storable_in_postgresql() -> None:
    assert clean("a\x00b\udce9c") == "a\ufffdb?c"
    assert clean("x" * 10, 4) == "xxxx"
    assert clean(None) is None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("javascript:alert(1)", "https://"),
        ("https://a:b@example.com/", "user name"),
        ("https://example.com/a b", "spaces"),
        ("http://169.254.169.254/", "network policy"),
        ("http://[fe80::1]/", "network policy"),
        ("https://example.com:99999/", "invalid port"),
    ],
)
def test_webhook_urls_that_are_refused(url: str, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_url(url, NetPolicy())
    assert words in caught.value.errors[0].message


def test_webhook_ports_follow_the_policy() -> None:
    policy = NetPolicy.from_strings(ports="443")
    assert check_url(" https://10.0.0.5/hook ", policy) == "https://10.0.0.5/hook"
    with pytest.raises(ValidationError):
        check_url("http://10.0.0.5:8080/hook", policy)
