"""Masking: every secret value handed out, in every form it travels in, becomes `***`.

The credential provider remembers each value it reveals here (`remember`); whatever leaves the
process afterwards — log lines, stored parameters, outputs, errors and events — goes through
`mask` (or `mask_text`). Besides the value itself, its URL-encoded forms and its base64 forms
are masked, the latter at the three byte alignments a value can have inside a longer encoded
string (`Basic base64(user:token)`), in the standard and the URL-safe alphabets.

Before the first secret is revealed there is nothing to look for and `mask` returns its argument
at once (one attribute test): the engine pays for masking only when secrets are in use.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
#: Values shorter than this are not masked: masking `on` or `42` everywhere would garble every
#: log line and output while protecting nothing worth the name.
MIN_SECRET_LENGTH = 4
# An encoded fragment shorter than this is too likely to occur by chance in unrelated text.
_MIN_FRAGMENT_LENGTH = 6


class Masker:
    """The secret values of a process and the one pattern that finds any of their forms."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._forms: set[str] = set()
        self._lock = threading.Lock()
        #: None until a secret is remembered: the fast path of `mask`.
        self.pattern: re.Pattern[str] | None = None

    def remember(self, value: str) -> None:
        """Mask `value` (and its encoded forms) from now on."""
        if len(value) < MIN_SECRET_LENGTH or value in self._values:
            return
        with self._lock:
            self._values.add(value)
            self._forms.update(forms(value))
            # Longest first, so a form that contains another is replaced whole.
            ordered = sorted(self._forms, key=len, reverse=True)
            self.pattern = re.compile("|".join(map(re.escape, ordered)))

    def mask_text(self, text: str) -> str:
        """`text` with every secret form replaced by `***`."""
        pattern = self.pattern
        if pattern is None:
            return text
        return pattern.sub(MASK, text)

    def mask(self, value: Any) -> Any:
        """A copy of JSON-like `value` with secrets masked in every string (keys included);
        `value` itself when no secret was ever revealed or none occurs in it."""
        pattern = self.pattern
        if pattern is None:
            return value
        return _masked(value, pattern)


def forms(value: str) -> set[str]:
    """The forms of a secret that are masked: as is, URL-encoded, and base64 fragments."""
    found = {value, quote(value, safe=""), quote_plus(value), quote(value)}
    raw = value.encode("utf-8")
    found.add(base64.b64encode(raw).decode("ascii"))
    found.add(base64.urlsafe_b64encode(raw).decode("ascii"))
    for offset in range(3):
        # Encoded after `offset` unknown bytes, the characters that depend only on the
        # secret's bits start after the prefix's bits and end before the padding's.
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii").rstrip("=")
        start = -(-offset * 8 // 6)
        end = (offset + len(raw)) * 8 // 6
        fragment = encoded[start:end]
        if len(fragment) >= _MIN_FRAGMENT_LENGTH:
            found.add(fragment)
            found.add(fragment.replace("+", "-").replace("/", "_"))
    return {f for f in found if len(f) >= MIN_SECRET_LENGTH}


def _masked(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(MASK, value) if pattern.search(value) else value
    if isinstance(value, Mapping):
        return {_masked(k, pattern): _masked(v, pattern) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item, pattern) for item in value]
    return value


#: The process's masker: the credential provider feeds it, the log and the store read it.
MASKER = Masker()
remember = MASKER.remember
mask = MASKER.mask
mask_text = MASKER.mask_text


def mask_log_event(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: mask secrets in every value of a log line."""
    if MASKER.pattern is None:
        return event
    masked: MutableMapping[str, Any] = _masked(event, MASKER.pattern)
    return masked
