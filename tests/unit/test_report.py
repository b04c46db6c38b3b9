"""Lint output formats: text, JSON, GitHub workflow commands and SARIF 2.1.0."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from jsonschema import Draft7Validator

from runner.lint import report
from runner.spec import rules
from runner.spec.diagnostics import Diagnostic

SARIF_SCHEMA = Path(__file__).parent.parent / "data" / "sarif-schema-2.1.0.json"

HELLO, NIGHTLY = "workflows/hello.yaml", "workflows/nightly sync.yaml"
MESSAGE = "edge target `c` is 100% unknown: valid targets are a, b\nadd node `c` or fix the edge"
# Given out of order: every format sorts by path, line and column.
DIAGNOSTICS = (
    Diagnostic(NIGHTLY, 7, 22, 7, 23, "error", "unknown-edge-target", MESSAGE),
    Diagnostic(HELLO, 3, 8, 3, 16, "warning", "unused-var", "`vars.greeting` is never read"),
)
SOURCES = {
    (HELLO, 3): "vars:\t{greeting: hi}",
    (NIGHTLY, 7): "      - {targetNode: c}",
}


def source_line(path: str, line: int) -> str | None:
    return SOURCES.get((path, line))


def test_text_shows_each_problem_its_line_a_caret_and_a_summary():
    text = report.render_text(DIAGNOSTICS, source_line, files_checked=2)
    assert text == (
        "workflows/hello.yaml:3:8: warning: `vars.greeting` is never read [unused-var]\n"
        "3 | vars:   {greeting: hi}\n"
        "  |          ^~~~~~~~\n"
        "workflows/nightly sync.yaml:7:22: error: edge target `c` is 100% unknown: "
        "valid targets are a, b [unknown-edge-target]\n"
        "    add node `c` or fix the edge\n"
        "7 |       - {targetNode: c}\n"
        "  |                      ^\n"
        "1 error, 1 warning in 2 files"
    )


def test_text_colours_only_when_asked():
    plain = report.render_text(DIAGNOSTICS, source_line, files_checked=2)
    coloured = report.render_text(DIAGNOSTICS, source_line, files_checked=2, color=True)
    assert "\x1b[" not in plain
    assert "\x1b[31merror\x1b[0m" in coloured
    assert "\x1b[33mwarning\x1b[0m" in coloured
    assert "\x1b[2m[unused-var]\x1b[0m" in coloured


def test_text_without_problems_or_source():
    assert report.render_text([], source_line, files_checked=1) == "no problems found in 1 file"
    unreadable = report.render_text(DIAGNOSTICS[:1], lambda _p, _l: None, files_checked=3)
    assert unreadable.splitlines()[-1] == "1 error in 3 files"
    assert " | " not in unreadable


def test_text_carets_a_span_to_the_end_of_its_first_line_and_past_the_end():
    multi_line = Diagnostic("a.yaml", 2, 3, 4, 1, "error", "cycle", "a cycle")
    past_end = Diagnostic("a.yaml", 5, 10, 5, 11, "error", "schema-missing-key", "missing")
    lines = {2: "  - id: a", 5: "id: x"}
    text = report.render_text([multi_line, past_end], lambda _p, n: lines[n], files_checked=1)
    assert text.splitlines()[2] == "  |   ^~~~~~~"
    assert text.splitlines()[5] == "  |      ^"


def test_text_counts_wide_characters_and_hides_terminal_controls():
    wide = Diagnostic("a.yaml", 1, 5, 1, 7, "error", "schema-value", "bad \x1b[2J value")
    text = report.render_text([wide], lambda _p, _l: "名前: 値値\x07", files_checked=1)
    assert "\x1b" not in text
    assert "\x07" not in text
    assert text.splitlines()[1] == "1 | 名前: 値値\ufffd"
    assert text.splitlines()[2] == "  |       ^~~~"


def test_json_is_sorted_one_based_and_indented():
    text = report.render_json(DIAGNOSTICS)
    assert text.startswith('[\n  {\n    "path": "workflows/hello.yaml",')
    data = json.loads(text)
    assert [item["path"] for item in data] == [HELLO, NIGHTLY]
    assert data[1] == {
        "path": NIGHTLY,
        "line": 7,
        "column": 22,
        "endLine": 7,
        "endColumn": 23,
        "severity": "error",
        "rule": "unknown-edge-target",
        "message": MESSAGE,
    }
    assert report.render_json([]) == "[]"


def test_github_commands_escape_the_message_and_properties():
    assert report.render_github(DIAGNOSTICS) == (
        "::warning file=workflows/hello.yaml,line=3,col=8,endLine=3,endColumn=16,"
        "title=unused-var::`vars.greeting` is never read\n"
        "::error file=workflows/nightly sync.yaml,line=7,col=22,endLine=7,endColumn=23,"
        "title=unknown-edge-target::edge target `c` is 100%25 unknown: valid targets are a, b"
        "%0Aadd node `c` or fix the edge"
    )
    odd = Diagnostic("dir/50%,a:b.yaml", 1, 1, 3, 2, "error", "cycle", "cr\r\nlf")
    assert report.render_github([odd]) == (
        "::error file=dir/50%25%2Ca%3Ab.yaml,line=1,endLine=3,title=cycle::cr%0D%0Alf"
    )
    assert report.render_github([]) == ""


def test_sarif_validates_against_the_official_schema():
    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    log = json.loads(report.render_sarif(DIAGNOSTICS, tool_version="1.2.3"))
    validator = Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    assert list(validator.iter_errors(log)) == []
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert log["version"] == "2.1.0"


def test_sarif_describes_every_rule_and_points_results_at_them():
    run = json.loads(report.render_sarif(DIAGNOSTICS, tool_version="1.2.3"))["runs"][0]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("dwf", "1.2.3")
    assert urlsplit(driver["informationUri"]).scheme == "https"
    assert [rule["id"] for rule in driver["rules"]] == list(rules.RULES)
    unused = driver["rules"][list(rules.RULES).index("unused-var")]
    assert unused["shortDescription"]["text"] == rules.RULES["unused-var"].summary
    assert unused["defaultConfiguration"] == {"level": "warning"}
    assert unused["helpUri"].endswith("docs/lint-rules.md#unused-var")
    assert urlsplit(unused["helpUri"]).scheme == "https"

    first, second = run["results"]
    assert driver["rules"][first["ruleIndex"]]["id"] == first["ruleId"] == "unused-var"
    assert driver["rules"][second["ruleIndex"]]["id"] == second["ruleId"] == "unknown-edge-target"
    assert (first["level"], second["level"]) == ("warning", "error")
    assert second["message"] == {"text": MESSAGE}
    location = second["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "workflows/nightly%20sync.yaml"}
    assert location["region"] == {"startLine": 7, "startColumn": 22, "endLine": 7, "endColumn": 23}


def test_sarif_is_deterministic_and_keeps_unknown_rules_valid():
    stray = Diagnostic("a.yaml", 1, 1, 1, 2, "error", "not-a-rule", "?")
    once = report.render_sarif([*DIAGNOSTICS, stray], tool_version="1")
    assert once == report.render_sarif([stray, *reversed(DIAGNOSTICS)], tool_version="1")
    run = json.loads(once)["runs"][0]
    stray_result = next(result for result in run["results"] if result["ruleId"] == "not-a-rule")
    assert run["tool"]["driver"]["rules"][stray_result["ruleIndex"]] == {"id": "not-a-rule"}


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("workflows/a.yaml", "workflows/a.yaml"),
        ("./workflows/ä b#1.yaml", "workflows/%C3%A4%20b%231.yaml"),
        ("c:d.yaml", "c%3Ad.yaml"),
        ("/srv/repo/a b.yaml", "file:///srv/repo/a%20b.yaml"),
    ],
)
def test_artifact_uris_are_percent_encoded_references(path, uri):
    assert report.artifact_uri(path) == uri


def test_render_dispatches_on_the_format_name():
    for fmt in report.FORMATS:
        rendered = report.render(
            fmt, DIAGNOSTICS, source_line, files_checked=2, tool_version="1", color=False
        )
        assert "unused-var" in rendered
    with pytest.raises(ValueError, match="xml"):
        report.render("xml", DIAGNOSTICS, source_line, files_checked=2, tool_version="1")


def test_text_cuts_a_long_source_line_around_the_span():
    line = "x: " + "a" * 2_000_000 + ": b"
    at_start = Diagnostic("a.yaml", 1, 1, 1, 2, "error", "yaml-syntax", "bad")
    at_end = Diagnostic("a.yaml", 1, len(line) - 2, 1, len(line) - 1, "error", "yaml-syntax", "bad")
    start_text, end_text = (
        report.render_text([d], lambda _p, _l: line, files_checked=1).splitlines()
        for d in (at_start, at_end)
    )
    assert start_text[1] == "1 | x: " + "a" * (report.EXCERPT_CHARS - 3) + "…"
    assert start_text[2] == "  | ^"
    # The end of the line, with the caret still under the reported character.
    assert end_text[1] == "1 | …" + "a" * (report.EXCERPT_CHARS - 3) + ": b"
    assert end_text[2] == "  | " + " " * (1 + report.EXCERPT_CHARS - 3) + "^"
    assert end_text[1][len("1 | …") + report.EXCERPT_CHARS - 3] == ":"


def test_text_cut_keeps_context_before_a_span_in_the_middle():
    line = "b" * 1000 + "X" + "c" * 1000
    middle = Diagnostic("a.yaml", 1, 1001, 1, 1002, "error", "schema-value", "bad")
    _, shown, caret, _ = report.render_text([middle], lambda _p, _l: line, files_checked=1).split(
        "\n"
    )
    excerpt = shown.removeprefix("1 | ")
    assert excerpt == "…" + "b" * report.EXCERPT_LEAD + "X" + "c" * 159 + "…"
    assert caret == "  | " + " " * (1 + report.EXCERPT_LEAD) + "^"


UNDECODABLE = "workflows/bad\udcff.yaml"  # os.fsdecode(b"workflows/bad\xff.yaml")


def test_a_name_that_is_not_utf8_is_escaped_alike_in_every_format():
    found = Diagnostic(UNDECODABLE, 1, 1, 1, 2, "error", "cycle", f"also in {UNDECODABLE}")
    shown = r"workflows/bad\xff.yaml"
    text = report.render_text([found], lambda _p, _l: None, files_checked=1)
    assert text.splitlines()[0] == f"{shown}:1:1: error: also in {shown} [cycle]"
    assert json.loads(report.render_json([found]))[0]["path"] == shown
    assert json.loads(report.render_json([found]))[0]["message"] == f"also in {shown}"
    assert report.render_github([found]).startswith(f"::error file={shown},line=1,")
    result = json.loads(report.render_sarif([found], tool_version="1"))["runs"][0]["results"][0]
    assert result["message"]["text"] == f"also in {shown}"
    # A URI percent-encodes the name's very bytes, so it still names the file.
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "workflows/bad%FF.yaml"
    for fmt in report.FORMATS:  # all of it can be written as UTF-8
        report.render(fmt, [found], lambda _p, _l: None, files_checked=1, tool_version="1").encode()
