"""Webhook signatures (SPEC §5): HMAC-SHA256 over the raw body bytes, compared in constant time.

- `github`: `X-Hub-Signature-256: sha256=<hex>` of the body.
- `slack`: `X-Slack-Signature: v0=<hex>` of `v0:<X-Slack-Request-Timestamp>:<body>`, refused
  when the timestamp is more than 5 minutes from now (a replayed request).
- `hmac-sha256`: the hex digest of the body (optionally prefixed `sha256=`) in the trigger's
  `signatureHeader`.

`verify` returns None when the request is authentic, else why not (for the log; the client only
learns that its signature was refused).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

#: Slack's replay window: a request whose timestamp is further from now is refused.
SLACK_REPLAY_WINDOW_SECONDS = 300
GITHUB_HEADER = "x-hub-signature-256"
SLACK_HEADER = "x-slack-signature"
SLACK_TIMESTAMP_HEADER = "x-slack-request-timestamp"
#: Enough for any Unix time in seconds until the year 33658.
MAX_TIMESTAMP_DIGITS = 12


def digest(secret: str, message: bytes) -> str:
    """The hex HMAC-SHA256 of `message` under `secret`."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    kind: str,
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    header: str | None = None,
    now: float | None = None,
) -> str | None:
    """None when `body` and `headers` (lower-case names) carry a valid `kind` signature made
    with `secret`; otherwise the reason it is refused."""
    if kind == "github":
        return _compare(headers.get(GITHUB_HEADER), "sha256=", digest(secret, body), GITHUB_HEADER)
    if kind == "slack":
        stamp = headers.get(SLACK_TIMESTAMP_HEADER)
        if not stamp:
            return f"the {SLACK_TIMESTAMP_HEADER} header is missing"
        # Digits only, as Slack sends it: int() would also take `+`, `_`, spaces and 4,300
        # digits, and a number that long cannot be compared with the clock.
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= MAX_TIMESTAMP_DIGITS):
            return f"the {SLACK_TIMESTAMP_HEADER} header is not a Unix time in whole seconds"
        skew = abs((time.time() if now is None else now) - int(stamp))
        if skew > SLACK_REPLAY_WINDOW_SECONDS:
            return (
                f"the request timestamp is {skew:.0f} s from now, outside the "
                f"{SLACK_REPLAY_WINDOW_SECONDS} s replay window"
            )
        expected = digest(secret, b"v0:" + stamp.encode() + b":" + body)
        return _compare(headers.get(SLACK_HEADER), "v0=", expected, SLACK_HEADER)
    if kind == "hmac-sha256":
        name = (header or "").lower()
        given = headers.get(name)
        if given is not None and given.lower().startswith("sha256="):
            given = given[len("sha256=") :]
        return _compare(given, "", digest(secret, body), name)
    return f"unknown signature kind {kind!r}"


def _compare(given: str | None, prefix: str, expected: str, name: str) -> str | None:
    if not given:
        return f"the {name} header is missing"
    if not given.startswith(prefix):
        return f"the {name} header does not start with {prefix!r}"
    # compare_digest on bytes: its time does not depend on where the values differ.
    if not hmac.compare_digest(given[len(prefix) :].strip().lower().encode(), expected.encode()):
        return f"the {name} signature does not match the body"
    return None
