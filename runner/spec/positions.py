"""Turning a finding's document path into a line and column of its file.

`runner.spec.loader.locate` records where every key and value sits (only files with findings
pay for it); `resolve` picks the span a finding should point at.
"""

from __future__ import annotations

import re

from runner.spec.diagnostics import DocPath, Finding, Span
from runner.spec.loader import Located, locate

__all__ = ["index_positions", "resolve", "split_lines"]

# The line breaks YAML parsers count (libyaml and ruamel alike), and no others: str.splitlines
# would also split on form feeds and other separators and so disagree with reported lines.
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def split_lines(text: str) -> list[str]:
    """The file's lines, numbered as the YAML parser numbers them (line N is item N - 1)."""
    return _LINE_BREAK.split(text)


def index_positions(text: str) -> dict[DocPath, Located]:
    """Every path of the document with the span of its value (and key); partial on bad YAML."""
    return locate(text)


def resolve(finding: Finding, index: dict[DocPath, Located]) -> Span:
    """The span a finding points at: its own, its path's, or its deepest known parent's."""
    if finding.span is not None:
        return finding.span
    path = finding.path
    while path and path not in index:
        path = path[:-1]
    located = index.get(path)
    if located is None:
        return Span(1, 1, 1, 2)
    if finding.at_key and path == finding.path and located.key is not None:
        return located.key
    value = located.value
    if value.end_line == value.line:
        return value
    # A multi-line collection: point at its key when it has one, else at where it starts,
    # so the caret lands on a line the user recognises.
    if located.key is not None:
        return located.key
    return Span(value.line, value.column, value.line, value.column + 1)
