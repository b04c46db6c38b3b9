"""Draw a plan as a Mermaid flowchart or a Graphviz digraph (`dwf graph`, pull-request comments).

Both drawings list nodes in document order and routes by source then route order, so the same
plan always gives byte-identical text. Edge styles: success solid, failure dashed or dotted and
red, always thick; a node's `onFailure` is a failure edge labelled "onFailure". The entry node and
the failure path (the workflow's `onFailure` node and what follows it) are styled apart.
"""

from __future__ import annotations

from runner.plan import compiler
from runner.spec import model

ENTRY_COLOUR = "#2e7d32"
FAILURE_COLOUR = "#c62828"
FAILURE_FILL = "#fdecea"

# Mermaid decodes `#<decimal>;` entities inside labels. Every character that could end a quoted
# label (`"`), an edge label (`|`), start an entity (`#`), a markdown string (`` ` ``), an HTML tag
# (`<`, `>`, `&`) or a `\n` escape (`\`) is written as one, so no condition can break the chart.
_MERMAID_ESCAPED = {char: f"#{ord(char)};" for char in '#"|\\<>&`'}
_MERMAID_ARROWS = {"success": "-->", "failure": "-.->", "always": "==>"}
_DOT_STYLES = {
    "success": "style=solid",
    "failure": f'style=dashed, color="{FAILURE_COLOUR}", fontcolor="{FAILURE_COLOUR}"',
    "always": "style=bold, penwidth=2",
}


def node_caption(node: model.Node) -> str:
    """What a drawing shows under a node's id: its action type, or the workflow it starts."""
    if node.node_type == "subworkflow":
        return f"subworkflow: {node.workflow_id}"
    return node.action_type or "(no actionType)"


def route_label(route: compiler.Route) -> str | None:
    """The text on a route's arrow: "onFailure", its condition, or nothing."""
    if route.kind == "onFailure":
        return "onFailure"
    return route.condition


def _lines(text: str) -> list[str]:
    # Tabs and other control characters would be drawn as boxes or break a line; spaces will do.
    return ["".join(" " if ord(c) < 32 else c for c in line) for line in text.splitlines() or [""]]


def _mermaid_text(text: str) -> str:
    escaped = ("".join(_MERMAID_ESCAPED.get(c, c) for c in line) for line in _lines(text))
    return "<br/>".join(escaped)


def to_mermaid(plan: compiler.Plan) -> str:
    """A Mermaid `flowchart TD` of the plan, safe for any node id and condition text."""
    # Node ids may hold dots, dashes or words Mermaid reserves (`end`): draw them as n0, n1, …
    # in document order and show the real id in the label.
    safe = {node.id: f"n{index}" for index, node in enumerate(plan.workflow.nodes)}
    out = ["flowchart TD"]
    for node in plan.workflow.nodes:
        label = _mermaid_text(node.id) + "<br/>" + _mermaid_text(node_caption(node))
        opening, closing = ("[[", "]]") if node.node_type == "subworkflow" else ("[", "]")
        out.append(f'    {safe[node.id]}{opening}"{label}"{closing}')
    failure_links: list[str] = []
    for index, route in enumerate(plan.routes):
        arrow = _MERMAID_ARROWS[route.when]
        caption = route_label(route)
        text = f'|"{_mermaid_text(caption)}"|' if caption is not None else ""
        out.append(f"    {safe[route.source]} {arrow}{text} {safe[route.target]}")
        if route.when == "failure":
            failure_links.append(str(index))
    if failure_links:
        out.append(f"    linkStyle {','.join(failure_links)} stroke:{FAILURE_COLOUR}")
    out.append(f"    classDef entry stroke:{ENTRY_COLOUR},stroke-width:3px")
    out.append(f"    classDef failurePath fill:{FAILURE_FILL},stroke:{FAILURE_COLOUR}")
    out.append(f"    class {safe[plan.entry_node]} entry")
    failure_nodes = [safe[n.id] for n in plan.workflow.nodes if n.id in plan.failure_path]
    if failure_nodes:
        out.append(f"    class {','.join(failure_nodes)} failurePath")
    return "\n".join(out) + "\n"


def _dot_string(text: str) -> str:
    # Inside a quoted DOT string `\` starts escapes (`\N` is the node name, `\l` a line break),
    # so backslashes are doubled before quotes are escaped and line breaks become `\n`.
    escaped = (line.replace("\\", "\\\\").replace('"', '\\"') for line in _lines(text))
    return '"' + "\\n".join(escaped) + '"'


def to_dot(plan: compiler.Plan) -> str:
    """A Graphviz digraph of the plan; node ids are quoted, so any id is safe."""
    out = [
        f"digraph {_dot_string(plan.workflow.id)} {{",
        "    rankdir=TB;",
        '    node [shape=box, style=rounded, fontname="Helvetica"];',
        '    edge [fontname="Helvetica"];',
    ]
    for node in plan.workflow.nodes:
        attrs = [f"label={_dot_string(node.id + chr(10) + node_caption(node))}"]
        if node.node_type == "subworkflow":
            attrs.append("peripheries=2")
        if node.id == plan.entry_node:
            attrs.append(f'color="{ENTRY_COLOUR}", penwidth=3')
        if node.id in plan.failure_path:
            attrs.append(f'style="rounded,filled", fillcolor="{FAILURE_FILL}"')
            attrs.append(f'color="{FAILURE_COLOUR}"')
        out.append(f"    {_dot_string(node.id)} [{', '.join(attrs)}];")
    for route in plan.routes:
        attrs = [_DOT_STYLES[route.when]]
        label = route_label(route)
        if label is not None:
            attrs.insert(0, f"label={_dot_string(label)}")
        out.append(
            f"    {_dot_string(route.source)} -> {_dot_string(route.target)} [{', '.join(attrs)}];"
        )
    out.append("}")
    return "\n".join(out) + "\n"
