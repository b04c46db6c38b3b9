"""Text Postgres can store (runner/spec/storable.py): the checks and the escape for messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runner.spec import storable


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            {"a": "ok", "b": ["x", {"c": "y\x00"}]},
            (("b", 1, "c"), "holds a NUL character (U+0000)"),
        ),
        ({"a": "\udcff"}, (("a",), "holds the surrogate code point U+DCFF (not Unicode text)")),
        ({"k\x00": 1}, ((), "has a key `k\\u0000` that holds a NUL character (U+0000)")),
        (["first\x00", "second\x00"], ((0,), "holds a NUL character (U+0000)")),
        ({"e": "Zoë 🚀 計画", "n": 1, "z": None}, None),
    ],
)
def test_find_names_the_first_unstorable_string(value: Any, expected: Any) -> None:
    assert storable.find(value) == expected


def test_find_walks_deep_data_without_recursion() -> None:
    deep: Any = "x\x00"
    for _ in range(5_000):
        deep = [deep]
    found = storable.find(deep, ("outputs",))
    assert found is not None and len(found[0]) == 5_001


def test_the_quick_test_passes_over_ordinary_text() -> None:
    for value in ({"e": "Zoë 🚀"}, {"t": "a\\u0000 written out"}, {"n": [1, 2.5, None]}):
        dumped = json.dumps(value, ensure_ascii=False)
        if storable.maybe_unstorable(dumped):  # a false alarm costs only a walk
            assert storable.find(value) is None
    assert storable.maybe_unstorable(json.dumps({"a": "\x00"}, ensure_ascii=False))
    assert storable.maybe_unstorable(json.dumps({"a": "\ud800"}, ensure_ascii=False))


def test_escaped_writes_nul_and_surrogates_as_json_escapes() -> None:
    assert storable.escaped("a\x00b\udcffc 🚀") == "a\\u0000b\\udcffc 🚀"
    assert storable.escaped("plain") == "plain"
    assert storable.text_problem(storable.escaped("\x00\ud800")) is None
