"""The proof a reply carries, and the verdict recorded with it (pure)."""

from __future__ import annotations

from postroom.actions.replies import auth_verdict, reply_address, token_hash, tokens_in

TOKEN = "0123456789abcdef0123456789abcdef"


def test_reply_address_is_the_mailbox_plus_the_token() -> None:
    assert reply_address("approvals@example.com", TOKEN) == f"approvals+act-{TOKEN}@example.com"


def test_tokens_are_found_in_any_form_of_the_address() -> None:
    found = tokens_in([
        f"Approvals <APPROVALS+ACT-{TOKEN.upper()}@example.com>",
        f"box+team+act-{TOKEN[::-1]}@example.com",  # the mailbox has a plus tag of its own
        "approvals@example.com",
        f"approvals+act-{TOKEN[:-1]}@example.com",  # too short: not a token
        f"approvals-act-{TOKEN}@example.com",  # no plus: not a reply address
    ])  # fmt: skip
    assert found == [TOKEN, TOKEN[::-1]]
    assert token_hash(TOKEN.upper()) == token_hash(TOKEN)


def test_the_topmost_authentication_results_is_the_verdict() -> None:
    verdict = auth_verdict([
        ("Received", "from x"),
        ("Authentication-Results", "mx.example.com;\r\n spf=pass smtp.mailfrom=a.test;\r\n"
                                   " dkim=fail header.d=a.test; DMARC=FAIL header.from=a.test"),
        ("Authentication-Results", "attacker.test; dmarc=pass"),
    ])  # fmt: skip
    assert verdict.text == "mx.example.com: spf=pass dkim=fail dmarc=fail"
    assert verdict.dmarc_failed
    passed = auth_verdict([("authentication-results", "mx.example.com; dmarc=pass; dkim=pass")])
    assert passed.text == "mx.example.com: dmarc=pass dkim=pass" and not passed.dmarc_failed
    assert auth_verdict([]).text.startswith("none:")
