"""Findings (where in the document, by path) and diagnostics (where in the file, by line)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]
#: A location inside a loaded document: mapping keys and sequence indices from the root.
DocPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Span:
    """A 1-based, inclusive-start, exclusive-end region of a file."""

    line: int
    column: int
    end_line: int
    end_column: int


@dataclass(frozen=True, slots=True)
class Finding:
    """A problem found by a check, located by document path; the lint resolves it to a Span.

    `at_key` points at the mapping key instead of its value (an unknown or duplicate key).
    `span` is set directly by the YAML layer, which knows positions before any path exists.
    """

    rule: str
    message: str
    path: DocPath = ()
    at_key: bool = False
    severity: Severity | None = None
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One reported problem: file, 1-based position, severity, stable rule id and message."""

    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    severity: Severity
    rule: str
    message: str

    def as_dict(self) -> dict[str, object]:
        """The JSON shape of `dwf lint --format json`."""
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "endLine": self.end_line,
            "endColumn": self.end_column,
            "severity": self.severity,
            "rule": self.rule,
            "message": self.message,
        }


def format_path(path: DocPath) -> str:
    """Render a document path the way users write it: `nodes[2].parameters.text`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out or "(document)"


def escape_undecodable(text: str) -> str:
    """`text` with what cannot be written as UTF-8 escaped as Python's backslashreplace does:
    a file name's undecodable byte (decoded by the OS as a lone surrogate) as `\\xff`, any
    other lone surrogate as `\\ud800`. Every lint output format shows names this way."""
    if text.isascii():
        return text
    return "".join(_escape(char) if "\ud800" <= char <= "\udfff" else char for char in text)


def _escape(surrogate: str) -> str:
    code = ord(surrogate)
    # 0xDC80-0xDCFF is how Python's file system decoding (surrogateescape) keeps a raw byte.
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"
