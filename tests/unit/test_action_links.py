"""Action link tokens (pure)."""

from __future__ import annotations

from postroom.actions.links import Invalid, LinkClaims, recipient_hash, sign, verify

KEYS = {"k1": b"a" * 32, "k2": b"b" * 32}
CLAIMS = LinkClaims("act_1", "approve", recipient_hash("Bob@Postroom.test"), 2_000)


def test_round_trip_and_recipient_hash_is_case_insensitive() -> None:
    token = sign(CLAIMS, key_id="k1", key=KEYS["k1"])
    assert verify(token, keys=KEYS, now=1_000) == CLAIMS
    assert CLAIMS.recipient_hash == recipient_hash("bob@postroom.test")


def test_tampered_choice_is_refused() -> None:
    token = sign(CLAIMS, key_id="k1", key=KEYS["k1"])
    other = sign(
        LinkClaims("act_1", "reject", CLAIMS.recipient_hash, 2_000), key_id="k1", key=KEYS["k1"]
    )
    forged = other.split(".")[0] + "." + token.split(".")[1]
    assert verify(forged, keys=KEYS, now=1_000) == Invalid("bad signature")


def test_expired_unknown_key_and_malformed() -> None:
    token = sign(CLAIMS, key_id="k1", key=KEYS["k1"])
    assert verify(token, keys=KEYS, now=2_000) == Invalid("expired")
    assert verify(token, keys={"k2": KEYS["k2"]}, now=1_000) == Invalid("unknown key")
    for bad in ("", "x", "a.b.c", "!!!.???", "e30.AAAA"):
        assert isinstance(verify(bad, keys=KEYS, now=1_000), Invalid)


def test_old_key_still_verifies_after_rotation() -> None:
    old = sign(CLAIMS, key_id="k1", key=KEYS["k1"])
    assert verify(old, keys=KEYS, now=1_000) == CLAIMS
