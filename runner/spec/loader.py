"""Reading a workflow file into plain JSON data, safely and fast, with positions on demand.

ruamel.yaml's C-backed parser turns the text into a stream of events; `_Builder` turns the
events into JSON data under the YAML 1.2 core schema (`NO` and `yes` stay strings, timestamps
stay text), refusing duplicate keys, unsupported tags and values JSON cannot hold. Building
from events rather than through ruamel's safe constructor is about three times faster (the
constructor resolves every scalar through generic Python machinery), keeps each limit exact and
cheap, and lets the same walk record the position of every key and value when a file has
findings to report (`locate`). Limits: the file size; the nesting depth (the parser is
iterative, so even a million `[` cannot overflow a stack); and the number of values after alias
expansion, counted arithmetically, so an alias bomb is refused without being expanded.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
from dataclasses import dataclass
from typing import Any

from runner.errors import LoadError as LoadError  # noqa: PLC0414 (re-export)
from runner.spec import storable
from runner.spec.diagnostics import DocPath, Finding, Span

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 200_000
_TAG = "tag:yaml.org,2002:"
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_FIRST = Span(1, 1, 1, 2)
_SPECIAL_FLOAT = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
                  ".nan", ".NaN", ".NAN"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Source:
    """A workflow file's text and where it came from (a path, or `repo@commit:path`)."""

    path: str
    text: str


@dataclass(frozen=True, slots=True)
class Located:
    """The span of a value and, for a mapping entry, of its key."""

    key: Span | None
    value: Span


def read_file(path: str | os.PathLike[str]) -> bytes:
    """A workflow file's bytes; LoadError (`file-not-regular`, `file-too-large`,
    `file-unreadable`) for anything but a regular file within MAX_FILE_BYTES, before reading it."""
    try:
        _check_regular(path, os.stat(path))
        # Opened without blocking, so a FIFO swapped in since the stat cannot hang the lint;
        # checked again on the descriptor, and read no further than one byte past the limit,
        # so a file that grows meanwhile costs no more memory than that.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(descriptor, "rb") as handle:
            _check_regular(path, os.fstat(descriptor))
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        message = f"cannot read the file: {exc.strerror or exc}"
        raise LoadError(Finding("file-unreadable", message, span=_FIRST)) from exc
    if len(raw) > MAX_FILE_BYTES:
        raise LoadError(Finding("file-too-large", _too_large("more than"), span=_FIRST))
    return raw


def _check_regular(path: str | os.PathLike[str], info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        message = f"{_not_regular(path, info.st_mode)}; only regular files are read as workflows"
        raise LoadError(Finding("file-not-regular", message, span=_FIRST))
    if info.st_size > MAX_FILE_BYTES:
        raise LoadError(Finding("file-too-large", _too_large(f"{info.st_size:,}"), span=_FIRST))


def _not_regular(path: str | os.PathLike[str], mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    )
    kind = next((name for test, name in kinds if test(mode)), "a special file")
    if os.path.islink(path):
        return f"the path is a symbolic link to {os.path.realpath(path)}, {kind}"
    return f"the path is {kind}"


def _too_large(size: str) -> str:
    return (
        f"the file is {size} bytes; workflow files are limited to {MAX_FILE_BYTES:,} bytes (1 MiB)"
    )


def decode(path: str, raw: bytes) -> Source:
    """Check size and encoding; LoadError (`file-too-large`, `file-unreadable`) otherwise."""
    if len(raw) > MAX_FILE_BYTES:
        raise LoadError(Finding("file-too-large", _too_large(f"{len(raw):,}"), span=_FIRST))
    if b"\x00" in raw:
        message = "the file is binary (it contains NUL bytes), not YAML text"
        raise LoadError(Finding("file-unreadable", message, span=_FIRST))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = raw[exc.start]
        message = f"the file is not UTF-8 text (invalid byte 0x{byte:02x} at offset {exc.start})"
        raise LoadError(Finding("file-unreadable", message, span=Span(line, 1, line, 2))) from exc
    return Source(path, text)


def load(text: str) -> dict[str, Any]:
    """Parse YAML text into a JSON-ready mapping, or raise LoadError with a positioned finding."""
    data = _Builder(text, None).run()
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {_kind(data)}"
        message = (
            f"the document is {kind}; a workflow file holds one mapping "
            "(apiVersion, kind, id, startNode, nodes, ...)"
        )
        raise LoadError(Finding("not-a-mapping", message, span=Span(1, 1, 1, 2)))
    return data


def locate(text: str) -> dict[DocPath, Located]:
    """Where every key and value of the document is, by path; partial if the YAML is broken."""
    index: dict[DocPath, Located] = {}
    # Positions up to a problem are still useful; `load` is the one that reports the problem.
    with contextlib.suppress(LoadError):
        _Builder(text, index).run()
    return index


def span_of(start: Any, end: Any) -> Span:
    """A 1-based Span from two 0-based parser marks."""
    return Span(start.line + 1, start.column + 1, end.line + 1, end.column + 1)


def _point(mark: Any) -> Span:
    return Span(mark.line + 1, mark.column + 1, mark.line + 1, mark.column + 2)


class _Frame:
    """A collection being built: its value, the pending key, merges, and (when recording) spans."""

    __slots__ = (
        "anchor",
        "key",
        "key_event",
        "merges",
        "own_key",
        "path",
        "size",
        "start",
        "value",
    )

    def __init__(
        self, value: Any, start: Any, anchor: str | None, path: DocPath, own_key: Span | None
    ) -> None:
        self.value, self.start, self.anchor, self.path, self.own_key = (
            value,
            start,
            anchor,
            path,
            own_key,
        )
        self.key: Any = _NO_KEY
        self.key_event: Any = None
        self.merges: list[dict[str, Any]] = []
        self.size = 1


_NO_KEY = object()


class _Builder:
    """Builds JSON data from parser events; records positions into `index` when given one."""

    def __init__(self, text: str, index: dict[DocPath, Located] | None) -> None:
        self.text, self.index = text, index
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.stack: list[_Frame] = []
        self.total = 0
        self.result: Any = None

    def run(self) -> Any:
        from ruamel.yaml.cyaml import CParser  # type: ignore[attr-defined]  # not in its __all__
        from ruamel.yaml.error import MarkedYAMLError, YAMLError
        from ruamel.yaml.events import (
            AliasEvent,
            DocumentStartEvent,
            MappingEndEvent,
            MappingStartEvent,
            ScalarEvent,
            SequenceEndEvent,
            SequenceStartEvent,
        )

        documents = 0
        # The C parser straight, not YAML().parse: that wrapper costs a generator step per event.
        parser = CParser(self.text)
        try:
            while (event := parser.get_event()) is not None:
                kind = type(event)
                if kind is ScalarEvent:
                    self.add(self.scalar(event), event, 1)
                elif kind is MappingStartEvent or kind is SequenceStartEvent:
                    self.open(event, kind is MappingStartEvent)
                elif kind is MappingEndEvent or kind is SequenceEndEvent:
                    self.close(event)
                elif kind is AliasEvent:
                    self.alias(event)
                elif kind is DocumentStartEvent:
                    documents += 1
                    if documents > 1:
                        message = (
                            "the file holds more than one YAML document; "
                            "put one workflow in each file"
                        )
                        raise LoadError(
                            Finding("yaml-syntax", message, span=_point(event.start_mark))
                        )
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            parts = [str(p) for p in (exc.context, exc.problem) if p]
            message = f"invalid YAML: {'; '.join(parts) or exc}"
            span = _point(mark) if mark is not None else Span(1, 1, 1, 2)
            raise LoadError(Finding("yaml-syntax", message, span=span)) from exc
        except YAMLError as exc:
            raise LoadError(
                Finding("yaml-syntax", f"invalid YAML: {exc}", span=Span(1, 1, 1, 2))
            ) from exc
        finally:
            parser.dispose()
        return self.result

    # -- building ----------------------------------------------------------------------------

    def scalar(self, event: Any) -> Any:
        value, tag = event.value, event.tag
        if (problem := storable.text_problem(value)) is not None:
            # An escape (`"\0"`, `"\ud800"`) can put it there; jsonb could not store it.
            self.refuse(event, f"this text {problem}, which a stored definition cannot hold")
        if tag is None or tag == "!":
            if event.style or not event.implicit[0] or tag == "!":
                return value
            return _resolve_plain(value, event, self.refuse)
        if tag == _TAG + "str":
            return value
        if tag in (_TAG + "int", _TAG + "float", _TAG + "bool", _TAG + "null"):
            resolved = _resolve_plain(value, event, self.refuse)
            expected = {"int": int, "float": float, "bool": bool, "null": type(None)}[
                tag[len(_TAG) :]
            ]
            if type(resolved) is expected:
                return resolved
            if expected is float and type(resolved) is int:
                return float(resolved)
            self.refuse(event, f"`{value}` is not a valid {tag[len(_TAG) :]}")
        self.refuse(event, f"the tag `{tag}` is not supported; workflow files hold plain JSON data")
        return None

    def open(self, event: Any, is_map: bool) -> None:
        if len(self.stack) >= MAX_DEPTH:
            message = f"collections nest deeper than {MAX_DEPTH} levels here; flatten the data"
            raise LoadError(Finding("yaml-too-deep", message, span=_point(event.start_mark)))
        tag = event.tag
        if tag is not None and tag != "!" and tag != _TAG + ("map" if is_map else "seq"):
            self.refuse(
                event, f"the tag `{tag}` is not supported; workflow files hold plain JSON data"
            )
        path, own_key = self.child_position()
        if self.stack and self.stack[-1].key is _NO_KEY and isinstance(self.stack[-1].value, dict):
            self.refuse(event, "keys must be strings; this key is a collection")
        self.stack.append(
            _Frame({} if is_map else [], event.start_mark, event.anchor, path, own_key)
        )

    def close(self, event: Any) -> None:
        frame = self.stack.pop()
        value = frame.value
        for merged in frame.merges:
            for key, item in merged.items():
                value.setdefault(key, item)
        if self.index is not None:
            self.index[frame.path] = Located(frame.own_key, span_of(frame.start, event.end_mark))
        if frame.anchor is not None:
            self.anchors[frame.anchor] = (value, frame.size)
        self.attach(value, event, frame.size, recorded=True)

    def alias(self, event: Any) -> None:
        if event.anchor not in self.anchors:
            message = (
                f"the alias `*{event.anchor}` names no anchor defined before it "
                "(or refers to itself)"
            )
            raise LoadError(
                Finding("yaml-syntax", message, span=span_of(event.start_mark, event.end_mark))
            )
        value, size = self.anchors[event.anchor]
        if self.total + size > MAX_VALUES:
            message = (
                f"aliases expand this document beyond {MAX_VALUES:,} values (an alias bomb?); "
                "repeat less through anchors"
            )
            raise LoadError(
                Finding("yaml-aliases", message, span=span_of(event.start_mark, event.end_mark))
            )
        self.add(value, event, size)

    def add(self, value: Any, event: Any, size: int) -> None:
        if event.anchor is not None and not isinstance(value, dict | list):
            self.anchors[event.anchor] = (value, 1)
        if self.index is not None:
            path, own_key = self.child_position()
            if not (
                self.stack
                and self.stack[-1].key is _NO_KEY
                and isinstance(self.stack[-1].value, dict)
            ):
                self.index[path] = Located(own_key, span_of(event.start_mark, event.end_mark))
        self.attach(value, event, size, recorded=False)

    def attach(self, value: Any, event: Any, size: int, *, recorded: bool) -> None:
        self.total += size
        if self.total > MAX_VALUES:
            message = f"the document holds more than {MAX_VALUES:,} values; split it"
            raise LoadError(Finding("file-too-large", message, span=_point(event.start_mark)))
        if not self.stack:
            self.result = value
            return
        parent = self.stack[-1]
        parent.size += size
        container = parent.value
        if isinstance(container, list):
            container.append(value)
            return
        if parent.key is _NO_KEY:
            if not isinstance(value, str):
                self.refuse(
                    event, f"keys must be strings; {value!r} is a {_kind(value)} (quote it)"
                )
            parent.key, parent.key_event = value, event
            return
        key = parent.key
        parent.key = _NO_KEY
        if key == "<<" and parent.key_event.style == "" and isinstance(value, dict | list):
            # A YAML merge key: the merged mappings fill in keys the mapping does not set itself.
            merges = value if isinstance(value, list) else [value]
            if not all(isinstance(m, dict) for m in merges):
                self.refuse(event, "a merge key `<<` takes a mapping or a list of mappings")
            parent.merges.extend(merges)
            return
        if key in container:
            message = f"duplicate key `{key}`; each key may appear once in a mapping"
            mark = parent.key_event
            raise LoadError(
                Finding("yaml-duplicate-key", message, span=span_of(mark.start_mark, mark.end_mark))
            )
        container[key] = value

    def child_position(self) -> tuple[DocPath, Span | None]:
        """The path and key span of the value about to be attached to the innermost frame."""
        if self.index is None or not self.stack:
            return (), None
        parent = self.stack[-1]
        if isinstance(parent.value, list):
            return (*parent.path, len(parent.value)), None
        if parent.key is _NO_KEY:
            return parent.path, None  # a key, not a value: it gets no path of its own
        key_event = parent.key_event
        key = parent.key if isinstance(parent.key, str) else str(parent.key)
        return (*parent.path, key), span_of(key_event.start_mark, key_event.end_mark)

    def refuse(self, event: Any, message: str) -> None:
        message = message.replace(_TAG, "!!")  # users write `!!binary`, not its full tag URI
        raise LoadError(
            Finding(
                "yaml-unsupported-value", message, span=span_of(event.start_mark, event.end_mark)
            )
        )


def _resolve_plain(value: str, event: Any, refuse: Any) -> Any:
    """The YAML 1.2 core schema: null, booleans, integers, floats; anything else is a string."""
    if not value or value in _NULLS:
        return None
    first = value[0]
    if first in "tTfF":
        return _BOOLS.get(value, value)
    if first not in "-+.0123456789":
        return value
    if _INT.match(value):
        try:
            return int(value)
        except ValueError:  # beyond Python's 4,300-digit limit for int(str)
            refuse(event, f"the number starting `{value[:20]}` has too many digits")
    if value.startswith(("0o", "0x")):
        try:
            return int(value[2:], 8 if value[1] == "o" else 16)
        except ValueError:
            return value
    if _FLOAT.match(value):
        number = float(value)
        if math.isfinite(number):
            return number
    if value in _SPECIAL_FLOAT or _FLOAT.match(value):
        refuse(
            event,
            f"`{value}` is not a finite number; JSON has no NaN or infinity "
            "(quote it to keep text)",
        )
    return value


def _kind(value: Any) -> str:
    return {
        dict: "mapping",
        list: "list",
        str: "string",
        int: "number",
        float: "number",
        bool: "boolean",
    }.get(type(value), "null" if value is None else type(value).__name__)
