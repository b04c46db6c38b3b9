"""Text that Postgres can store: no NUL character and no surrogate code point (SPEC §14).

Every value the runner records (parameters, outputs, vars, errors, events) goes into `jsonb`,
which holds Unicode text only: `\\u0000` cannot be converted to text, and a lone surrogate
(`\\ud800`, what invalid UTF-8 decodes to with `surrogateescape`) is not Unicode. Values a run
produces are checked before they are written, so such a value fails its node with a message
naming its path instead of failing the transition that would record it; messages for people are
escaped instead (`escaped`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from runner.spec.diagnostics import DocPath

# A surrogate code point is never text: a valid pair is one code point in a Python str.
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """What makes `text` unstorable ("holds a NUL character (U+0000)"), or None."""
    if "\x00" in text:
        return "holds a NUL character (U+0000)"
    if not text.isascii() and (found := _SURROGATE.search(text)) is not None:
        return f"holds the surrogate code point U+{ord(found.group()):04X} (not Unicode text)"
    return None


def find(value: Any, path: DocPath = ()) -> tuple[DocPath, str] | None:
    """The path of the first string (a key or a value) in JSON data that cannot be stored, and
    what is wrong with it; None when all of it can be. Iterative: deep data cannot overflow."""
    stack: list[tuple[DocPath, Any]] = [(path, value)]
    while stack:
        at, item = stack.pop()
        if isinstance(item, str):
            if (problem := text_problem(item)) is not None:
                return at, problem
        elif isinstance(item, Mapping):
            for key, child in reversed(list(item.items())):
                if isinstance(key, str) and (problem := text_problem(key)) is not None:
                    return at, f"has a key `{escaped(key)}` that {problem}"
                stack.append(((*at, escaped(str(key))), child))
        elif isinstance(item, list | tuple):
            stack.extend((((*at, i), child) for i, child in reversed(list(enumerate(item)))))
    return None


def maybe_unstorable(dumped: str) -> bool:
    """Whether JSON text from `json.dumps(..., ensure_ascii=False)` may hold an unstorable
    string: a quick test of the whole text, so `find` walks only data that may."""
    return "\\u0000" in dumped or (not dumped.isascii() and _SURROGATE.search(dumped) is not None)


def escaped(text: str) -> str:
    """`text` with each NUL and surrogate written as its JSON escape (`\\u0000`): for messages,
    which are read by people and must be recorded whatever they quote."""
    if text.isascii() and "\x00" not in text:
        return text
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
