"""Masking: every secret value handed out, in every form it travels in, becomes `***`.

The credential provider remembers each value it reveals here (`remember`); whatever leaves the
process afterwards — log lines, stored parameters, outputs, errors and events — goes through
`mask` (or `mask_text`). Besides the value itself, its URL-encoded forms (Python's, and the
WHATWG URL standard's that httpx writes), its forms quoted in JSON text (escaped, with and
without ASCII escapes: jsonb, JSON logs and response bodies) and in Python's repr (exception
messages), and its base64 forms are masked, the latter at the three byte alignments a value can
have inside a longer encoded string (`Basic base64(user:token)`), in the standard and the
URL-safe alphabets.

Only these forms of exact values are known, which is why templates may place a secret but never
transform it (docs/security.md). Text that is cut to a length is masked before the cut (`cut`):
a secret cut in half is no longer a form the masker finds.

Before the first secret is revealed there is nothing to look for and `mask` returns its argument
at once (one attribute test): the engine pays for masking only when secrets are in use.
"""

from __future__ import annotations

import base64
import json
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
# The WHATWG URL standard's percent-encode sets (what httpx writes URLs with, in its errors and
# log lines): printable ASCII outside the set stays as it is; the rest is percent-encoded.
_QUERY_SET = frozenset(' "#<>')
_PATH_SET = _QUERY_SET | frozenset("?`{}")
_USERINFO_SET = _PATH_SET | frozenset("/:;=@[\\]^|")
_URL_SETS = (_QUERY_SET, _PATH_SET, _USERINFO_SET)


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
    """The forms of a secret that are masked: as is, URL-encoded, quoted in JSON or by repr,
    and base64 fragments."""
    found = {value, quote(value, safe=""), quote_plus(value), quote(value)}
    found.update(_url_encoded(value, encoded) for encoded in _URL_SETS)
    # Quoted, without the quotes: `a\"b` in JSON, `a\\b` in a repr, `\u00e9` or `\xe9` for é.
    found.add(json.dumps(value)[1:-1])
    found.add(json.dumps(value, ensure_ascii=False)[1:-1])
    found.add(repr(value)[1:-1])
    found.add(ascii(value)[1:-1])
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


def _url_encoded(value: str, encoded: frozenset[str]) -> str:
    """`value` percent-encoded as a URL part whose percent-encode set is `encoded`."""
    return "".join(
        char
        if " " < char < "\x7f" and char not in encoded
        else "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
        for char in value
    )


def cut(text: str, limit: int) -> str:
    """The first `limit` characters of `text`, masked before the cut: a secret cut in half
    would leave its first part in clear."""
    return mask_text(text)[:limit]


def _masked(value: Any, pattern: re.Pattern[str], objects: bool = False) -> Any:
    if isinstance(value, str):
        return pattern.sub(MASK, value) if pattern.search(value) else value
    if isinstance(value, Mapping):
        return {
            _masked(k, pattern, objects): _masked(v, pattern, objects) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_masked(item, pattern, objects) for item in value]
    if objects and not isinstance(value, int | float | type(None)):
        # A log renderer prints any other object by its repr (an exception, a URL): mask that.
        shown = repr(value)
        if pattern.search(shown):
            return pattern.sub(MASK, shown)
    return value


#: The process's masker: the credential provider feeds it, the log and the store read it.
MASKER = Masker()
remember = MASKER.remember
mask = MASKER.mask
mask_text = MASKER.mask_text


def mask_log_event(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: mask secrets in every value of a log line, and in the repr of
    any other object it holds (which is how the renderers print those)."""
    if MASKER.pattern is None:
        return event
    masked: MutableMapping[str, Any] = _masked(event, MASKER.pattern, objects=True)
    return masked
