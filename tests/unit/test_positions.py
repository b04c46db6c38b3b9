"""Positions: every key and value located by document path, 1-based."""

from __future__ import annotations

from runner.spec import positions
from runner.spec.diagnostics import Finding, Span

TEXT = """\
# a comment
id: demo
nodes:
  - id: a
    edges: [{targetNode: b, when: success}]
  - id: b
    parameters:
      text: "hello"
"""


def test_scalars_keys_and_flow_items_are_located():
    index = positions.index_positions(TEXT)
    assert index[("id",)].key == Span(2, 1, 2, 3)
    assert index[("id",)].value == Span(2, 5, 2, 9)
    assert index[("nodes", 0, "edges", 0, "targetNode")].value == Span(5, 26, 5, 27)
    assert index[("nodes", 1, "parameters", "text")].value == Span(8, 13, 8, 20)


def test_a_block_collection_resolves_to_its_key():
    index = positions.index_positions(TEXT)
    finding = Finding("schema-missing-key", "x", ("nodes", 1, "parameters"))
    assert positions.resolve(finding, index) == Span(7, 5, 7, 15)


def test_a_sequence_item_resolves_to_where_it_starts():
    index = positions.index_positions(TEXT)
    finding = Finding("schema-missing-key", "x", ("nodes", 1))
    assert positions.resolve(finding, index).line == 6


def test_an_unknown_path_falls_back_to_its_deepest_known_parent():
    index = positions.index_positions(TEXT)
    finding = Finding("x", "x", ("nodes", 0, "edges", 0, "condition"))
    assert positions.resolve(finding, index).line == 5


def test_at_key_points_at_the_key():
    index = positions.index_positions(TEXT)
    finding = Finding("schema-unknown-key", "x", ("nodes", 0, "edges", 0, "when"), at_key=True)
    assert positions.resolve(finding, index) == Span(5, 29, 5, 33)


def test_positions_survive_a_later_syntax_error():
    index = positions.index_positions("id: a\nnodes: [1, 2\n")
    assert index[("id",)].value.line == 1
