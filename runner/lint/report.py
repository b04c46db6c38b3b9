"""Lint diagnostics rendered for people (text), programs (JSON), GitHub Actions and SARIF 2.1.0.

Every format lists diagnostics in one order, by path, line and column, so output is stable
whatever order the checks (or worker processes) produced them in.
"""

from __future__ import annotations

import dataclasses
import json
import os
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import PurePath
from urllib.parse import quote

from runner.spec import rules
from runner.spec.diagnostics import Diagnostic, escape_undecodable

FORMATS = ("text", "json", "github", "sarif")
#: Reads line `line` (1-based) of file `path` for a text excerpt; None when it cannot.
SourceLine = Callable[[str, int], str | None]

#: Tab stops of the text format's source excerpts, in terminal columns.
TAB_WIDTH = 4
#: A longer source line is cut to this many characters around the span, marked at each cut.
EXCERPT_CHARS = 200
#: How many characters before the span a cut line keeps.
EXCERPT_LEAD = 40
CUT_MARKER = "\u2026"
#: SARIF wants absolute URIs; pyproject.toml declares no project URL yet, so this is a placeholder.
PROJECT_URI = "https://github.com/dataworkflows/dataworkflows"
RULES_DOC_URI = f"{PROJECT_URI}/blob/main/docs/lint-rules.md"
SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"

_RED, _YELLOW, _DIM, _BOLD, _RESET = "\x1b[31m", "\x1b[33m", "\x1b[2m", "\x1b[1m", "\x1b[0m"
_SEVERITY_COLORS = {"error": _RED, "warning": _YELLOW}
# Bidirectional overrides reorder what a terminal shows ("Trojan Source"); shown as U+FFFD.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_REPLACEMENT = "\ufffd"


def render(
    fmt: str,
    diagnostics: Sequence[Diagnostic],
    source_line: SourceLine,
    *,
    files_checked: int,
    tool_version: str,
    color: bool = False,
) -> str:
    """Render `diagnostics` in one of FORMATS; the result has no trailing newline."""
    match fmt:
        case "text":
            return render_text(diagnostics, source_line, files_checked=files_checked, color=color)
        case "json":
            return render_json(diagnostics)
        case "github":
            return render_github(diagnostics)
        case "sarif":
            return render_sarif(diagnostics, tool_version=tool_version)
    raise ValueError(f"unknown lint output format {fmt!r}; expected one of {', '.join(FORMATS)}")


# -- text -----------------------------------------------------------------------------------------


def render_text(
    diagnostics: Sequence[Diagnostic],
    source_line: SourceLine,
    *,
    files_checked: int,
    color: bool = False,
) -> str:
    """`path:line:col: severity: message [rule]`, the source line with a caret under the span,
    then a summary line such as `3 errors, 1 warning in 2 files`."""
    paint = _painter(color)
    lines: list[str] = []
    for diagnostic in _ordered(diagnostics):
        source = source_line(diagnostic.path, diagnostic.line)
        lines.extend(_text_entry(_escaped(diagnostic), source, paint))
    lines.append(paint(_summary(diagnostics, files_checked), _BOLD))
    return "\n".join(lines)


def _text_entry(
    diagnostic: Diagnostic, source: str | None, paint: Callable[[str, str], str]
) -> list[str]:
    severity_color = _SEVERITY_COLORS[diagnostic.severity]
    first, *more = _printable(diagnostic.message).split("\n")
    # The rule stays on the first line so editors' problem matchers and grep see one whole line;
    # further message lines are indented beneath it.
    lines = [
        f"{_printable(diagnostic.path)}:{diagnostic.line}:{diagnostic.column}: "
        f"{paint(diagnostic.severity, severity_color)}: {first} "
        f"{paint(f'[{diagnostic.rule}]', _DIM)}",
        *(f"    {part}" for part in more),
    ]
    if source is not None:
        excerpt, start, width = _excerpt(source, diagnostic)
        gutter = str(diagnostic.line)
        lines.append(f"{gutter} | {excerpt}".rstrip())
        caret = paint("^" + "~" * (width - 1), severity_color)
        lines.append(f"{' ' * len(gutter)} | {' ' * start}{caret}")
    return lines


def _excerpt(source: str, diagnostic: Diagnostic) -> tuple[str, int, int]:
    """The source line as a terminal shows it (cut to EXCERPT_CHARS around the span), and the
    span's first cell and width in cells."""
    source = source.rstrip("\r\n")
    start = min(max(diagnostic.column - 1, 0), len(source))
    end = len(source)
    if diagnostic.end_line == diagnostic.line:
        end = min(max(diagnostic.end_column - 1, start), len(source))
    begin, stop = _window(len(source), start)
    lead = CUT_MARKER if begin > 0 else ""
    cells: list[str] = [lead]
    offsets: list[int] = []  # the terminal column each shown character starts at
    column = len(lead)
    for char in source[begin:stop]:
        offsets.append(column)
        if char == "\t":
            # Expanded here, not by the terminal, so the caret line can use the same tab stops.
            spaces = TAB_WIDTH - column % TAB_WIDTH
            cells.append(" " * spaces)
            column += spaces
        else:
            shown = _printable(char)
            cells.append(shown)
            column += _cell_width(shown)
    offsets.append(column)
    if stop < len(source):
        cells.append(CUT_MARKER)
    first, last = offsets[start - begin], offsets[min(end, stop) - begin]
    return "".join(cells), first, max(1, last - first)


def _window(length: int, start: int) -> tuple[int, int]:
    """The [begin, stop) of a line's characters to show: all of a short line, else
    EXCERPT_CHARS with the span's start EXCERPT_LEAD characters in (or as near as ends allow)."""
    if length <= EXCERPT_CHARS:
        return 0, length
    begin = (
        0
        if start + EXCERPT_LEAD <= EXCERPT_CHARS
        else min(start - EXCERPT_LEAD, length - EXCERPT_CHARS)
    )
    return begin, begin + EXCERPT_CHARS


def _cell_width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _printable(text: str) -> str:
    """`text` with line breaks as `\\n` and control characters replaced, safe for a terminal."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(_REPLACEMENT if _unsafe(char) else char for char in text)


def _unsafe(char: str) -> bool:
    """A character that would move the cursor, ring, recolour or reorder a terminal's text."""
    if char in "\n\t":
        return False
    return char in _BIDI_CONTROLS or unicodedata.category(char) == "Cc"


def _summary(diagnostics: Sequence[Diagnostic], files_checked: int) -> str:
    files = _plural(files_checked, "file")
    if not diagnostics:
        return f"no problems found in {files}"
    errors = sum(1 for diagnostic in diagnostics if diagnostic.severity == "error")
    counts = [
        _plural(count, noun)
        for count, noun in ((errors, "error"), (len(diagnostics) - errors, "warning"))
        if count
    ]
    return f"{', '.join(counts)} in {files}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _painter(color: bool) -> Callable[[str, str], str]:
    if not color:
        return lambda text, _code: text
    return lambda text, code: f"{code}{text}{_RESET}"


# -- json and github ------------------------------------------------------------------------------


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    """A JSON array of `Diagnostic.as_dict()` objects, 1-based positions, indented by 2."""
    return json.dumps([_escaped(d).as_dict() for d in _ordered(diagnostics)], indent=2)


def render_github(diagnostics: Sequence[Diagnostic]) -> str:
    """GitHub Actions workflow commands (`::error file=…,line=…::message`), one per line."""
    return "\n".join(_github_command(_escaped(d)) for d in _ordered(diagnostics))


def _github_command(diagnostic: Diagnostic) -> str:
    # GitHub accepts columns only on an annotation that spans one line.
    one_line = diagnostic.end_line == diagnostic.line
    properties: dict[str, object] = {
        "file": PurePath(diagnostic.path).as_posix(),
        "line": diagnostic.line,
    }
    if one_line:
        properties["col"] = diagnostic.column
    properties["endLine"] = diagnostic.end_line
    if one_line:
        properties["endColumn"] = diagnostic.end_column
    properties["title"] = diagnostic.rule
    pairs = ",".join(f"{key}={_escape_property(str(value))}" for key, value in properties.items())
    return f"::{diagnostic.severity} {pairs}::{_escape_data(diagnostic.message)}"


def _escape_data(text: str) -> str:
    """Escape a workflow command's message as the Actions runner expects (`%` first)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """Escape a workflow command's property value: the message escapes plus `:` and `,`."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


# -- sarif ----------------------------------------------------------------------------------------


def render_sarif(diagnostics: Sequence[Diagnostic], *, tool_version: str) -> str:
    """A SARIF 2.1.0 log: one run of `dwf`, every lint rule described, one result a diagnostic."""
    ordered = _ordered(diagnostics)
    descriptors = [_sarif_rule(rule) for rule in rules.RULES.values()]
    rule_index = {rule_id: index for index, rule_id in enumerate(rules.RULES)}
    # A rule id the table lacks still needs a descriptor for ruleIndex to point at.
    for rule_id in sorted({diagnostic.rule for diagnostic in ordered} - rule_index.keys()):
        rule_index[rule_id] = len(descriptors)
        descriptors.append({"id": rule_id})
    log = {
        "$schema": SARIF_SCHEMA_URI,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "dwf",
                        "informationUri": PROJECT_URI,
                        "version": tool_version,
                        "rules": descriptors,
                    }
                },
                # Positions come from the YAML parser, which counts characters, not UTF-16 units.
                "columnKind": "unicodeCodePoints",
                "results": [_sarif_result(d, rule_index[d.rule]) for d in ordered],
            }
        ],
    }
    return json.dumps(log, indent=2)


def _sarif_rule(rule: rules.Rule) -> dict[str, object]:
    return {
        "id": rule.id,
        "shortDescription": {"text": rule.summary},
        "defaultConfiguration": {"level": rule.severity},
        "helpUri": f"{RULES_DOC_URI}#{rule.id}",
    }


def _sarif_result(diagnostic: Diagnostic, rule_index: int) -> dict[str, object]:
    # The schema wants positions of at least 1; a malformed diagnostic must not void the log.
    start_line = max(diagnostic.line, 1)
    region = {
        "startLine": start_line,
        "startColumn": max(diagnostic.column, 1),
        "endLine": max(diagnostic.end_line, start_line),
        "endColumn": max(diagnostic.end_column, 1),
    }
    return {
        "ruleId": diagnostic.rule,
        "ruleIndex": rule_index,
        "level": diagnostic.severity,
        "message": {"text": escape_undecodable(diagnostic.message)},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": artifact_uri(diagnostic.path)},
                    "region": region,
                }
            }
        ],
    }


def artifact_uri(path: str) -> str:
    """A file path as a URI reference: relative with `/` and percent-escapes, or `file:` URI.

    A URI percent-encodes the name's bytes, so a name that is not UTF-8 keeps its very bytes
    (`bad%FF.yaml`) and still names the file."""
    pure = PurePath(path)
    if pure.is_absolute():
        return pure.as_uri()
    return quote(_name_bytes(pure.as_posix()), safe="/")


def _name_bytes(name: str) -> bytes:
    try:
        return os.fsencode(name)
    except UnicodeEncodeError:  # a lone surrogate no file system decoding made
        return escape_undecodable(name).encode()


def _escaped(diagnostic: Diagnostic) -> Diagnostic:
    """The diagnostic with its path and message as every format shows them: undecodable bytes
    of a file name as `\\xff` (`escape_undecodable`), never a lone surrogate."""
    path, message = escape_undecodable(diagnostic.path), escape_undecodable(diagnostic.message)
    if path == diagnostic.path and message == diagnostic.message:
        return diagnostic
    return dataclasses.replace(diagnostic, path=path, message=message)


def _ordered(diagnostics: Sequence[Diagnostic]) -> list[Diagnostic]:
    return sorted(
        diagnostics,
        key=lambda d: (d.path, d.line, d.column, d.end_line, d.end_column, d.rule, d.message),
    )
