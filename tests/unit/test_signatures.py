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
