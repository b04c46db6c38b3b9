"""Webhook signatures (runner/triggers/signatures.py), as GitHub and Slack document them."""

from __future__ import annotations

import hashlib
import hmac
import time

from runner.triggers import signatures

SECRET = "It's a Secret to Everybody"
BODY = b"Hello, World!"


def test_github_signature_from_githubs_own_example():
    # docs.github.com "Validating webhook deliveries" gives this exact signature.
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    headers = {"x-hub-signature-256": header}
    assert signatures.verify("github", SECRET, BODY, headers) is None
    assert "does not match" in signatures.verify("github", SECRET, BODY + b" ", headers)
    assert "missing" in signatures.verify("github", SECRET, BODY, {})
    assert "start with" in signatures.verify(
        "github", SECRET, BODY, {"x-hub-signature-256": header[7:]}
    )


def slack_headers(secret: str, body: bytes, stamp: int) -> dict[str, str]:
    base = f"v0:{stamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": str(stamp), "x-slack-signature": f"v0={digest}"}


def test_slack_signature_within_and_outside_the_replay_window():
    now = time.time()
    fresh = slack_headers(SECRET, BODY, int(now) - 10)
    assert signatures.verify("slack", SECRET, BODY, fresh, now=now) is None
    stale = slack_headers(SECRET, BODY, int(now) - 301)
    assert "replay window" in signatures.verify("slack", SECRET, BODY, stale, now=now)
    future = slack_headers(SECRET, BODY, int(now) + 400)
    assert "replay window" in signatures.verify("slack", SECRET, BODY, future, now=now)
    assert "does not match" in signatures.verify("slack", "other", BODY, fresh, now=now)
    assert "missing" in signatures.verify("slack", SECRET, BODY, {}, now=now)


def test_hmac_sha256_in_a_named_header_with_or_without_a_prefix():
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    for value in (digest, f"sha256={digest}", digest.upper()):
        headers = {"x-signature": value}
        assert signatures.verify("hmac-sha256", SECRET, BODY, headers, header="X-Signature") is None
    bad = {"x-signature": "0" * 64}
    assert "does not match" in signatures.verify(
        "hmac-sha256", SECRET, BODY, bad, header="X-Signature"
    )


def test_slack_signature_from_slacks_own_example():
    # api.slack.com "Verifying requests from Slack" signs this slash command's form body.
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
        b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
        b"command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
        b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
        b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    headers = {
        "x-slack-request-timestamp": "1531420618",
        "x-slack-signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
    }
    assert signatures.verify("slack", secret, body, headers, now=1531420618 + 60) is None


def test_a_slack_timestamp_must_be_plain_digits_of_a_unix_time():
    now = time.time()
    stamp = int(now)
    for sent in ("9" * 400, f"+{stamp}", f" {stamp}", f"{stamp:_}", "١٢٣", "-1", "1e9", ""):
        headers = slack_headers(SECRET, BODY, stamp) | {"x-slack-request-timestamp": sent}
        problem = signatures.verify("slack", SECRET, BODY, headers, now=now)
        assert problem is not None, sent  # refused with a reason, never an exception
        assert "x-slack-request-timestamp" in problem
