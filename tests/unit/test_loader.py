"""The loader: YAML 1.2 semantics, limits, and a positioned finding for every refusal."""

from __future__ import annotations

import pytest

from runner.spec import loader
from runner.spec.diagnostics import Span


def _bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(8):
        name, prev = chr(ord("b") + i), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


BOMB = _bomb()


def refusal(text: str) -> loader.LoadError:
    with pytest.raises(loader.LoadError) as info:
        loader.load(text)
    return info.value


def test_yaml_1_2_keeps_norway_and_yes_as_strings():
    assert loader.load("country: NO\nanswer: yes\nflag: true\n") == {
        "country": "NO",
        "answer": "yes",
        "flag": True,
    }


def test_duplicate_key_is_refused_at_the_second_occurrence():
    error = refusal("id: a\nnodes: []\nid: b\n")
    assert error.finding.rule == "yaml-duplicate-key"
    assert error.finding.span.line == 3
    assert "`id`" in error.finding.message


def test_syntax_error_is_positioned():
    error = refusal("id: a\nnodes: [1, 2\nstartNode: x\n")
    assert error.finding.rule == "yaml-syntax"
    assert error.finding.span.line == 3


def test_more_than_one_document_is_refused():
    error = refusal("id: a\n---\nid: b\n")
    assert error.finding.rule == "yaml-syntax"
    assert "more than one YAML document" in error.finding.message


@pytest.mark.parametrize(
    ("text", "kind"), [("", "empty"), ("- a\n- b\n", "a list"), ("just text", "a string")]
)
def test_a_document_that_is_not_a_mapping(text, kind):
    error = refusal(text)
    assert error.finding.rule == "not-a-mapping"
    assert kind in error.finding.message


def test_alias_bomb_is_refused_at_the_alias_that_passes_the_limit():
    assert len(BOMB) < 500
    error = refusal(BOMB)
    assert error.finding.rule == "yaml-aliases"
    # Line 6 (`f: [*e, ...]`) is where the expansion first passes MAX_VALUES.
    assert error.finding.span.line == 6


def test_modest_aliases_are_fine():
    data = loader.load("base: &b {retry: 3}\none: *b\ntwo: *b\n")
    assert data["one"] == data["two"] == {"retry": 3}


def test_deep_flow_nesting_is_refused_without_crashing_the_process():
    # 300,000 levels would overflow the C composer's stack; the pre-check must catch it first.
    error = refusal("x: " + "[" * 300_000 + "]" * 300_000)
    assert error.finding.rule == "yaml-too-deep"
    # The mapping is level 1, so the 64th bracket is the first level past the limit.
    assert error.finding.span == Span(1, 3 + loader.MAX_DEPTH, 1, 4 + loader.MAX_DEPTH)


def test_deep_block_nesting_is_refused_at_the_level_that_passes_the_limit():
    text = "a:\n" + "".join(" " * (i + 1) + "b:\n" for i in range(100))
    error = refusal(text)
    assert error.finding.rule == "yaml-too-deep"
    assert error.finding.span.line == loader.MAX_DEPTH + 1


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = "x: '" + "[" * 200 + "'\n"
    assert loader.load(text) == {"x": "[" * 200}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a: .nan\n", "NaN"),
        ("a: .inf\n", "infinity"),
        ("a: !!binary aGVsbG8=\n", "binary"),
        ("a: !!set {x, y}\n", "set"),
        ("1: x\n", "keys must be strings"),
        # Escapes YAML allows but a stored definition (jsonb) cannot hold.
        ('a: "x\\0y"\n', "holds a NUL character (U+0000)"),
        ('"k\\x00": 1\n', "holds a NUL character (U+0000)"),
    ],
)
def test_values_json_cannot_hold_are_refused(text, needle):
    error = refusal(text)
    assert error.finding.rule == "yaml-unsupported-value"
    assert needle in error.finding.message


def test_timestamps_stay_the_iso_text_the_user_wrote():
    assert loader.load("day: 2026-03-29\n") == {"day": "2026-03-29"}


def test_unknown_tag_is_refused_by_name():
    error = refusal("a: !python/object x\n")
    assert error.finding.rule == "yaml-unsupported-value"
    assert "`!python/object`" in error.finding.message


def test_standard_tags_and_merge_keys():
    data = loader.load(
        "base: &b {x: 1, y: 2}\nm: {<<: *b, y: 3}\ns: !!str 12\nf: !!float 1\nq: ! 12\n"
    )
    assert data["m"] == {"x": 1, "y": 3}
    assert data["s"] == "12" and data["f"] == 1.0 and data["q"] == "12"


def test_core_schema_scalars():
    data = loader.load("a: 0x1F\nb: 0o17\nc: -1.5e3\nd: ~\ne:\nf: True\ng: 1_000\nh: '007'\n")
    assert data == {
        "a": 31,
        "b": 15,
        "c": -1500.0,
        "d": None,
        "e": None,
        "f": True,
        "g": "1_000",
        "h": "007",
    }


def test_undefined_alias_is_a_syntax_error():
    assert refusal("a: *nowhere\n").finding.rule == "yaml-syntax"


def test_file_size_limit():
    with pytest.raises(loader.LoadError) as info:
        loader.decode("big.yaml", b"a: " + b"x" * loader.MAX_FILE_BYTES)
    assert info.value.finding.rule == "file-too-large"
    assert "1 MiB" in info.value.finding.message


def test_binary_and_non_utf8_files_are_unreadable():
    with pytest.raises(loader.LoadError) as info:
        loader.decode("b.yaml", b"\x89PNG\r\n\x1a\n\x00\x00")
    assert info.value.finding.rule == "file-unreadable"
    with pytest.raises(loader.LoadError) as info:
        loader.decode("l.yaml", b"id: a\nname: caf\xe9\n")
    assert info.value.finding.rule == "file-unreadable"
    assert info.value.finding.span.line == 2


def test_utf8_bom_is_accepted():
    assert loader.load(loader.decode("bom.yaml", b"\xef\xbb\xbfid: a\n").text) == {"id": "a"}


def test_read_file_reads_a_regular_file_and_refuses_the_rest_unread(tmp_path):
    import socket

    regular = tmp_path / "a.yaml"
    regular.write_bytes(b"x" * loader.MAX_FILE_BYTES)  # exactly the limit is allowed
    assert loader.read_file(regular) == b"x" * loader.MAX_FILE_BYTES

    cases = {"folder": "a folder", "sock.yaml": "a socket", "missing.yaml": "No such file"}
    (tmp_path / "folder").mkdir()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock.yaml"))
        for name, says in cases.items():
            with pytest.raises(loader.LoadError) as info:
                loader.read_file(tmp_path / name)
            finding = info.value.finding
            assert finding.rule == (
                "file-unreadable" if name == "missing.yaml" else "file-not-regular"
            )
            assert says in finding.message and finding.span == Span(1, 1, 1, 2)
