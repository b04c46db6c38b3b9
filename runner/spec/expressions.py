"""Expressions: Jinja templates and JavaScript conditions, and the lint rules over them (SPEC §4).

`template_environment` and `compile_condition` are shared with the execution engine, so a run
renders and evaluates with exactly what lint accepted. jinja2 and quickjs are imported lazily:
linting a file without expressions does not pay for them.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from runner.spec import structure
from runner.spec.diagnostics import DocPath, Finding, format_path
from runner.spec.model import WebhookTrigger, Workflow

if TYPE_CHECKING:
    import quickjs
    from jinja2.sandbox import ImmutableSandboxedEnvironment

#: Top-level names a template in parameters, idempotencyKey or outputs may read.
TEMPLATE_SCOPE = ("trigger", "event", "vars", "nodes", "execution", "secrets")
#: Top-level names a template in `vars` may read: vars render once, before any node ran.
VARS_SCOPE = ("trigger", "event", "execution", "secrets")
#: The parameters of a compiled condition, in call order.
CONDITION_SCOPE = ("trigger", "event", "vars", "nodes", "execution", "result")

DEFAULT_CONDITION_TIME_LIMIT_SECONDS = 0.05
DEFAULT_CONDITION_MEMORY_LIMIT_BYTES = 32 * 1024 * 1024

_TEMPLATE_CACHE_SIZE = 8192
_CONDITION_CACHE_SIZE = 4096
# Jinja resolves `nodes.items` to the dict method, never to a node called `items`.
_DICT_ATTRIBUTES = frozenset(dir(dict))
_JS_OBJECT_ATTRIBUTES = frozenset(dir(object)) | {
    "constructor",
    "hasOwnProperty",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toLocaleString",
    "toString",
    "valueOf",
}
# Concrete types first: isinstance against the Mapping ABC is slow on this hot path.
_MAPPINGS = (MappingProxyType, dict, Mapping)
_SCALARS = (int, float, bool, type(None))
_NAME_HINTS = {
    "result": "`result` exists only in edge conditions; templates read nodes['<id>']",
}


# --- Templates ----------------------------------------------------------------------------------


@functools.cache
def template_environment() -> ImmutableSandboxedEnvironment:
    """The one sandboxed, strict Jinja environment: lint parses and the engine renders with it."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def is_template(text: str) -> bool:
    """Whether a string holds Jinja markup; plain strings are used as they are, without Jinja."""
    return "{" in text and ("{{" in text or "{%" in text or "{#" in text)


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """What the rules need to know about one template text; computed once per distinct text."""

    error: str | None = None
    unknown_callables: tuple[str, ...] = ()
    names: frozenset[str] = frozenset()
    node_refs: tuple[str, ...] = ()
    var_refs: frozenset[str] = frozenset()
    reads_all_vars: bool = False


@functools.lru_cache(maxsize=_TEMPLATE_CACHE_SIZE)
def analyse_template(text: str) -> TemplateInfo:
    """Parse a template (never render it): syntax, unknown filters/tests, names and references."""
    return _simple_template(text) or _parse_template(text)


# Most templates only output paths such as `{{ nodes['a'].outputs.count }}`: recognising those
# with one regex is ~15x faster than Jinja's parser and avoids importing jinja2. Anything else
# (filters, operators, tags, keywords, Jinja's globals) goes to Jinja; tests check both agree.
_JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace"})
_JINJA_WORDS = frozenset(
    {"true", "false", "True", "False", "none", "None", "not", "and", "or", "in", "is", "if", "else"}
)
_PLAIN_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PLAIN_KEY = r"""\[\s*(?:'([^'\\{}\n]*)'|"([^"\\{}\n]*)")\s*\]"""
_SIMPLE_OUTPUT = re.compile(
    rf"\{{\{{-?\s*({_PLAIN_NAME})((?:\s*\.\s*{_PLAIN_NAME}|\s*{_PLAIN_KEY})*)\s*-?\}}\}}"
)
_FIRST_ACCESS = re.compile(rf"\s*(?:\.\s*({_PLAIN_NAME})|{_PLAIN_KEY})")


def _simple_template(text: str) -> TemplateInfo | None:
    """The analysis of a template made only of text and `{{ path }}` outputs; None otherwise."""
    if "{%" in text or "{#" in text:
        return None
    names: set[str] = set()
    node_refs: dict[str, None] = {}
    var_refs: set[str] = set()
    reads_all_vars = False
    starts: set[int] = set()
    for match in _SIMPLE_OUTPUT.finditer(text):
        name = match.group(1)
        if name in _JINJA_WORDS or name in _JINJA_GLOBALS:
            return None
        starts.add(match.start())
        names.add(name)
        if name not in ("nodes", "vars"):
            continue
        access = _FIRST_ACCESS.match(match.group(2))
        if access is None:
            key = None
        elif (attr := access.group(1)) is not None:
            key = None if attr in _DICT_ATTRIBUTES else attr
        else:
            key = access.group(2) if access.group(2) is not None else access.group(3)
        if name == "nodes" and key is not None:
            node_refs[key] = None
        elif name == "vars":
            if key is None:
                reads_all_vars = True
            else:
                var_refs.add(key)
    # Every `{{` must open one of the outputs matched above, or Jinja reads the text differently.
    index = text.find("{{")
    while index != -1:
        if index not in starts:
            return None
        index = text.find("{{", index + 1)
    return TemplateInfo(
        names=frozenset(names),
        node_refs=tuple(node_refs),
        var_refs=frozenset(var_refs),
        reads_all_vars=reads_all_vars,
    )


def _parse_template(text: str) -> TemplateInfo:
    """The analysis of any template, by Jinja's own parser."""
    from jinja2 import TemplateSyntaxError

    env = template_environment()
    try:
        ast = env.parse(text)
    except TemplateSyntaxError as exc:
        where = f" (line {exc.lineno} of the template)" if "\n" in text else ""
        return TemplateInfo(error=f"{exc.message}{where}")
    except RecursionError:
        return TemplateInfo(error="the template nests too deeply to parse")
    try:
        return _walk_template(ast, env)
    except RecursionError:
        return TemplateInfo(error="the template nests too deeply to parse")


def _walk_template(ast: Any, env: ImmutableSandboxedEnvironment) -> TemplateInfo:
    """One pass over the AST; names assigned anywhere in the template count as declared."""
    from jinja2 import nodes

    loaded: set[str] = set()
    declared: set[str] = set(env.globals)
    unknown: list[str] = []
    node_refs: dict[str, None] = {}
    var_refs: set[str] = set()
    literal_reads: set[int] = set()  # ids of `vars` Name nodes read through a literal key
    vars_names: list[int] = []
    for node in ast.find_all(nodes.Node):
        if isinstance(node, nodes.Name):
            if node.ctx == "load":
                loaded.add(node.name)
                if node.name == "vars":
                    vars_names.append(id(node))
            else:
                declared.add(node.name)
        elif isinstance(node, nodes.Getattr | nodes.Getitem):
            target = node.node
            if not isinstance(target, nodes.Name) or target.name not in ("nodes", "vars"):
                continue
            if isinstance(node, nodes.Getattr):
                key = None if node.attr in _DICT_ATTRIBUTES else node.attr
            else:
                arg = node.arg
                key = (
                    arg.value
                    if isinstance(arg, nodes.Const) and isinstance(arg.value, str)
                    else None
                )
            if key is None:
                continue
            if target.name == "nodes":
                node_refs[key] = None
            else:
                var_refs.add(key)
                literal_reads.add(id(target))
        elif isinstance(node, nodes.Filter) and node.name not in env.filters:
            unknown.append(_unknown_callable("filter", node.name, env.filters))
        elif isinstance(node, nodes.Test) and node.name not in env.tests:
            unknown.append(_unknown_callable("test", node.name, env.tests))
        elif isinstance(node, nodes.For):
            declared.add("loop")
        elif isinstance(node, nodes.Macro | nodes.CallBlock):
            declared.update(("caller", "varargs", "kwargs"))
            if isinstance(node, nodes.Macro):
                declared.add(node.name)
        elif isinstance(node, nodes.Import):
            declared.add(node.target)
        elif isinstance(node, nodes.FromImport):
            declared.update(n if isinstance(n, str) else n[1] for n in node.names)
    return TemplateInfo(
        unknown_callables=tuple(dict.fromkeys(unknown)),
        names=frozenset(loaded - declared),
        node_refs=tuple(node_refs),
        var_refs=frozenset(var_refs),
        reads_all_vars=any(name_id not in literal_reads for name_id in vars_names),
    )


def _unknown_callable(kind: str, name: str, known: Mapping[str, Any]) -> str:
    return f"unknown {kind} `{name}`" + _did_you_mean(name, known)


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    import difflib  # only on an error: its import costs more than a whole clean lint

    matches = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean `{matches[0]}`?" if matches else ""


# --- Conditions ---------------------------------------------------------------------------------

# A label no condition can know: the function body ends with `break <label>`, which only parses
# inside the labelled block. QuickJS's Function constructor evaluates "(function anonymous(…) {"
# + body + "})" as one script, so a condition that closed the brackets around it could run code
# at construction; with the guard such a condition is a SyntaxError, raised before anything runs.
_GUARD = f"__dwf_guard_{os.urandom(16).hex()}"
_SOURCE_GLOBAL = "__dwf_condition_source"
_CONSTRUCT = f"new Function({', '.join(repr(p) for p in CONDITION_SCOPE)}, {_SOURCE_GLOBAL})"
# The condition's first line in QuickJS's error positions: the constructor's two header lines,
# then the label line and the `return` line of the body.
_FIRST_SOURCE_LINE = 5
_ERROR_POSITION = re.compile(r"at <input>:(\d+):(\d+)")
_local = threading.local()


def condition_context() -> quickjs.Context:
    """This thread's QuickJS context for compiling conditions, with time and memory limits."""
    context = getattr(_local, "context", None)
    if context is None:
        import quickjs

        # QuickJS contexts must not be shared between threads, even one at a time.
        context = quickjs.Context()
        context.set_time_limit(DEFAULT_CONDITION_TIME_LIMIT_SECONDS)
        context.set_memory_limit(DEFAULT_CONDITION_MEMORY_LIMIT_BYTES)
        _local.context = context
    return context


def _function_body(source: str, opener: str, closer: str) -> str:
    return f"{_GUARD}: {{\nreturn {opener}\n{source}\n{closer};\nbreak {_GUARD};\n}}"


def compile_condition(context: quickjs.Context, source: str) -> quickjs.Object:
    """Compile a condition into a function of CONDITION_SCOPE without running any of it.

    Raises ValueError with QuickJS's message when it is not exactly one JavaScript expression.
    """
    import quickjs

    if not source.strip():
        raise ValueError("the condition is empty; write a JavaScript expression")
    functions = []
    # Compiled twice: `(src)` gives the natural error for a typo and is the function returned;
    # `[src]` then rejects sources valid only by closing the parenthesis and reopening one
    # (`1); while(1){}; (1`), which would otherwise compile into a statement list.
    for opener, closer in (("(", ")"), ("[", "]")):
        context.set(_SOURCE_GLOBAL, _function_body(source, opener, closer))
        try:
            functions.append(context.eval(_CONSTRUCT))
        except quickjs.JSException as exc:
            raise ValueError(_condition_message(source, str(exc), opener == "[")) from exc
        finally:
            context.set(_SOURCE_GLOBAL, None)
    return functions[0]


def _condition_message(source: str, error: str, second_pass: bool) -> str:
    lines = error.splitlines()
    reason = lines[0] if lines else "SyntaxError"
    if "label not found" in reason:
        return "not a single JavaScript expression: it closes the brackets around the condition"
    position = _ERROR_POSITION.search(error)
    where = ""
    if position is not None:
        line = int(position.group(1)) - _FIRST_SOURCE_LINE + 1
        source_lines = source.count("\n") + 1
        if line > source_lines:
            where = " at the end of the condition"
        elif line >= 1:
            where = f" at line {line}, column {position.group(2)} of the condition"
    if "stack" in reason.lower():
        return f"the condition nests too deeply to compile ({reason})"
    if second_pass:
        problem = "not a single JavaScript expression (statements, `;` or unbalanced brackets)"
        return f"{problem}: {reason}{where}"
    return f"{reason}{where}"


@functools.lru_cache(maxsize=_CONDITION_CACHE_SIZE)
def condition_error(source: str) -> str | None:
    """Why a condition does not compile, or None when it does; cached by source text."""
    try:
        compile_condition(condition_context(), source)
    except ValueError as exc:
        return str(exc)
    return None


# String literals and comments are matched (and skipped) as whole tokens so that text such as
# 'see nodes.x' is not taken for a read; `nodes['x']` matches from `nodes`, before its string.
_JS_READS = re.compile(
    r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|//[^\n]*|/\*.*?\*/"""
    r"|(?<![\w$.])(nodes|vars)(?![\w$])"
    r"(?:\s*(?:\??\.\s*([A-Za-z_$][\w$]*)"
    r"""|(?:\?\.\s*)?\[\s*(?:'([^'\\\n]*)'|"([^"\\\n]*)")\s*\]))?""",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class ConditionInfo:
    """What the rules need to know about one condition; computed once per distinct source."""

    error: str | None
    node_refs: tuple[str, ...] = ()
    var_refs: frozenset[str] = frozenset()
    reads_all_vars: bool = False


@functools.lru_cache(maxsize=_CONDITION_CACHE_SIZE)
def analyse_condition(source: str) -> ConditionInfo:
    """Compile a condition (never run it) and find its literal `nodes` and `vars` reads."""
    error = condition_error(source)
    if error is not None:
        return ConditionInfo(error)
    node_refs: dict[str, None] = {}
    var_refs: set[str] = set()
    whole = False
    for match in _JS_READS.finditer(source):
        name, attr = match.group(1), match.group(2)
        if name is None:  # a string literal or a comment
            continue
        key = attr if attr is not None else match.group(3) or match.group(4)
        if not key or (attr is not None and attr in _JS_OBJECT_ATTRIBUTES):
            whole = whole or name == "vars"
        elif name == "nodes":
            node_refs[key] = None
        else:
            var_refs.add(key)
    return ConditionInfo(None, tuple(node_refs), frozenset(var_refs), whole)


# --- The rules ----------------------------------------------------------------------------------

#: Who reads through an expression: a node's parameters, an edge condition of a node, a
#: workflow-level value that may read any node (vars, outputs), or a trigger's condition.
_ReaderKind = Literal["node", "edge", "any", "trigger"]


@dataclass(frozen=True, slots=True)
class _Reader:
    kind: _ReaderKind
    node: str = ""
    in_vars: bool = False


@dataclass(frozen=True, slots=True)
class _NodeRead:
    ref: str
    reader: _Reader
    base: str
    sub: DocPath
    path: DocPath

    @property
    def label(self) -> str:
        return _describe(self.base, self.sub)


class _Scan:
    """Collects findings, node reads and var reads over one workflow."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.findings: list[Finding] = []
        self.reads: list[_NodeRead] = []
        self.var_reads: set[str] = set()
        self.reads_all_vars = False

    def templates(self, value: Any, path: DocPath, base: str, reader: _Reader) -> None:
        found: list[tuple[DocPath, str]] = []
        _collect_templates(value, (), found)
        for sub, text in found:
            self.template(text, (*path, *sub), base, reader, sub)

    def template(
        self, text: str, path: DocPath, base: str, reader: _Reader, sub: DocPath = ()
    ) -> None:
        info = analyse_template(text)
        # Formatted only when a message may need it: most templates produce none.
        needs_label = info.error or info.unknown_callables or info.names or info.node_refs
        label = _describe(base, sub) if needs_label else base
        if info.error is not None:
            self.findings.append(
                Finding("template-syntax", f"{label}: template does not parse: {info.error}", path)
            )
            return
        for problem in info.unknown_callables:
            self.findings.append(Finding("template-syntax", f"{label}: {problem}", path))
        scope = VARS_SCOPE if reader.in_vars else TEMPLATE_SCOPE
        for name in sorted(info.names.difference(scope)):
            message = _unknown_name(label, name, scope, reader.in_vars)
            self.findings.append(Finding("template-unknown-name", message, path))
        self.var_reads |= info.var_refs
        self.reads_all_vars = self.reads_all_vars or info.reads_all_vars
        if not reader.in_vars:  # `nodes` in vars is already an error that says why
            self.reads.extend(_NodeRead(ref, reader, base, sub, path) for ref in info.node_refs)

    def condition(self, source: str, path: DocPath, label: str, reader: _Reader) -> None:
        info = analyse_condition(source)
        if info.error is not None:
            self.findings.append(Finding("condition-syntax", f"{label}: {info.error}", path))
            return
        self.var_reads |= info.var_refs
        self.reads_all_vars = self.reads_all_vars or info.reads_all_vars
        self.reads.extend(_NodeRead(ref, reader, label, (), path) for ref in info.node_refs)

    def node_reads(self) -> None:
        if not self.reads:
            return
        ids = {node.id for node in self.workflow.nodes}
        listed = ", ".join(sorted(ids))
        ancestors = structure.ancestors(self.workflow)
        failure_path = structure.failure_path(self.workflow)
        for read in self.reads:
            if read.ref not in ids:
                hint = _did_you_mean(read.ref, ids)
                if "-" in hint:
                    hint += " (ids with `-` are read as nodes['id'])"
                self.findings.append(
                    Finding(
                        "unknown-node-reference",
                        f"{read.label} reads nodes['{read.ref}'], but the workflow has no node "
                        f"`{read.ref}`{hint} (nodes: {listed})",
                        read.path,
                    )
                )
            elif message := _upstream_problem(read, ancestors, failure_path):
                self.findings.append(Finding("node-not-upstream", message, read.path))

    def unused_vars(self) -> None:
        if self.reads_all_vars:
            return
        for key in self.workflow.vars:
            if key not in self.var_reads:
                usage = f"vars.{key}" if key.isidentifier() else f"vars['{key}']"
                self.findings.append(
                    Finding(
                        "unused-var",
                        f"vars `{key}` is never read by a template or condition; read it as "
                        f"`{{{{ {usage} }}}}` or remove it",
                        ("vars", key),
                        at_key=True,
                    )
                )


def _collect_templates(value: Any, path: DocPath, out: list[tuple[DocPath, str]]) -> None:
    """Append every template string inside JSON-like data, with its path relative to the data."""
    if isinstance(value, str):
        if is_template(value):
            out.append((path, value))
    elif isinstance(value, _MAPPINGS):
        for key, item in value.items():
            if not isinstance(item, _SCALARS):
                _collect_templates(item, (*path, key), out)
    elif isinstance(value, tuple | list):
        for index, item in enumerate(value):
            if not isinstance(item, _SCALARS):
                _collect_templates(item, (*path, index), out)


def _describe(base: str, sub: DocPath) -> str:
    """`node `x` parameter` and ("a", 0) -> "node `x` parameter `a[0]`"."""
    return f"{base} `{format_path(sub)}`" if sub else base


def _unknown_name(label: str, name: str, scope: tuple[str, ...], in_vars: bool) -> str:
    valid = ", ".join(scope)
    if in_vars and name == "nodes":
        return (
            f"{label} reads `nodes`, but vars are rendered once when the execution starts, before "
            f"any node has run; vars may read only {valid}"
        )
    if in_vars and name == "vars":
        return (
            f"{label} reads `vars`, but vars are rendered together once at the start and cannot "
            f"read each other; vars may read only {valid}"
        )
    hint = _NAME_HINTS.get(name) or _did_you_mean(name, scope).removeprefix("; ")
    hint = f" ({hint})" if hint else ""
    return f"{label} reads `{name}`, which is not in scope{hint}; valid names here: {valid}"


def _upstream_problem(
    read: _NodeRead, ancestors: Mapping[str, frozenset[str]], failure_path: set[str]
) -> str | None:
    """Why `read` may see a node that has not finished yet, or None when it is safe."""
    if read.reader.kind == "any" or read.reader.node in failure_path:
        return None
    subject = f"{read.label} reads nodes['{read.ref}']"
    if read.reader.kind == "trigger":
        return (
            f"{subject}, but activation conditions run before the execution starts, so no node ran"
        )
    upstream = ancestors.get(read.reader.node, frozenset())
    if read.ref in upstream or (read.reader.kind == "edge" and read.ref == read.reader.node):
        return None
    if read.ref == read.reader.node:
        return f"{subject}: a node's own entry does not exist until it has finished"
    allowed = sorted(upstream | ({read.reader.node} if read.reader.kind == "edge" else set()))
    readable = f"readable: {', '.join(allowed)}" if allowed else "it has no upstream nodes"
    return (
        f"{subject}, but `{read.ref}` is not upstream of `{read.reader.node}`, so it may not have "
        f"finished then; read only nodes with an edge path to `{read.reader.node}` ({readable}), "
        "or add such an edge"
    )


def check(workflow: Workflow) -> list[Finding]:
    """Templates and conditions: syntax, names in scope, node references and unused vars."""
    scan = _Scan(workflow)
    for i, node in enumerate(workflow.nodes):
        reader = _Reader("node", node.id)
        scan.templates(
            node.parameters, ("nodes", i, "parameters"), f"node `{node.id}` parameter", reader
        )
        if node.idempotency_key is not None and is_template(node.idempotency_key):
            label = f"node `{node.id}` idempotencyKey"
            scan.template(node.idempotency_key, ("nodes", i, "idempotencyKey"), label, reader)
        edge_reader = _Reader("edge", node.id)
        for j, edge in enumerate(node.edges):
            if edge.condition is not None:
                label = f"node `{node.id}` edge {j} (to `{edge.target_node}`) condition"
                path = ("nodes", i, "edges", j, "condition")
                scan.condition(edge.condition, path, label, edge_reader)
    scan.templates(workflow.vars, ("vars",), "vars", _Reader("any", in_vars=True))
    scan.templates(workflow.outputs, ("outputs",), "output", _Reader("any"))
    for k, trigger in enumerate(workflow.triggers):
        if isinstance(trigger, WebhookTrigger) and trigger.activation_condition is not None:
            label = f"trigger `{trigger.id}` activationCondition"
            path = ("triggers", k, "activationCondition")
            scan.condition(trigger.activation_condition, path, label, _Reader("trigger"))
    scan.node_reads()
    scan.unused_vars()
    return scan.findings
