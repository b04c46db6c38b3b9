"""Expressions: Jinja templates and JavaScript conditions, and the lint rules over them (SPEC §4).

`template_environment` (here, built by `runner.spec.sandbox`) and `conditions.compile_condition`
are shared with the execution engine, so a run renders and evaluates with exactly what lint
accepted. jinja2 and quickjs are imported lazily: linting a file without expressions does not pay
for them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from runner.spec import conditions, structure
from runner.spec.diagnostics import DocPath, Finding, format_path
from runner.spec.model import WebhookTrigger, Workflow

if TYPE_CHECKING:
    from runner.spec.sandbox import BoundedEnvironment

#: Top-level names a template in a node's parameters may read. Only there are secrets placed
#: (`runner.spec.placement`): what an action receives is stored masked, and the action uses it.
TEMPLATE_SCOPE = ("trigger", "event", "vars", "nodes", "execution", "secrets")
#: Top-level names a template in `outputs` or an `idempotencyKey` may read: both are kept and
#: read back (outputs returned to callers and parents, keys stored with resource links), so no
#: secrets.
STORED_SCOPE = ("trigger", "event", "vars", "nodes", "execution")
#: Top-level names a template in `vars` may read: vars render once, before any node ran, and
#: are stored, so no secrets either.
VARS_SCOPE = ("trigger", "event", "execution")
_TEMPLATE_CACHE_SIZE = 8192
# `nodes.items` is the node `items` when the workflow has one (a key wins over a method, as the
# sandbox renders it), else the dict method: which one is known only with the workflow.
_DICT_ATTRIBUTES = frozenset(dir(dict))
# Concrete types first: isinstance against the Mapping ABC is slow on this hot path.
_MAPPINGS = (MappingProxyType, dict, Mapping)
_SCALARS = (int, float, bool, type(None))
_NAME_HINTS = {
    "result": "`result` exists only in edge conditions; templates read nodes['<id>']",
}
_SECRETS = "secrets"


# --- Templates ----------------------------------------------------------------------------------


@functools.cache
def template_environment() -> BoundedEnvironment:
    """The one sandboxed, strict, bounded Jinja environment: lint parses, the engine renders."""
    from runner.spec import sandbox

    return sandbox.environment()


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
    #: `nodes.get`, `vars.items`: ("nodes" | "vars", name) read through a name that is also a
    #: dict method; a key of that name, if the workflow has one, is what they read.
    method_reads: tuple[tuple[str, str], ...] = ()
    #: Whether the template names `secrets` at all (even a name it assigns itself), and each
    #: of its uses that is not a whole placement (`runner.spec.placement`).
    reads_secrets: bool = False
    secret_problems: tuple[str, ...] = ()


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
    # Secrets are judged by one analysis of the parsed template, lint's and the engine's.
    if "{%" in text or "{#" in text or _SECRETS in text:
        return None
    names: set[str] = set()
    node_refs: dict[str, None] = {}
    var_refs: set[str] = set()
    method_reads: dict[tuple[str, str], None] = {}
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
            if attr in _DICT_ATTRIBUTES:
                method_reads[(name, attr)] = None
                continue
            key = attr
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
        method_reads=tuple(method_reads),
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


def _walk_template(ast: Any, env: BoundedEnvironment) -> TemplateInfo:
    """One pass over the AST; names assigned anywhere in the template count as declared."""
    from jinja2 import nodes

    from runner.spec import placement

    loaded: set[str] = set()
    declared: set[str] = set(env.globals)
    unknown: list[str] = []
    node_refs: dict[str, None] = {}
    var_refs: set[str] = set()
    method_reads: dict[tuple[str, str], None] = {}
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
            key: str | None
            if isinstance(node, nodes.Getattr):
                if node.attr in _DICT_ATTRIBUTES:
                    # The key if the workflow has one, else the method: the scan decides.
                    method_reads[(target.name, node.attr)] = None
                    literal_reads.add(id(target))
                    continue
                key = node.attr
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
    secrets = placement.analyse(ast)
    return TemplateInfo(
        unknown_callables=tuple(dict.fromkeys(unknown)),
        names=frozenset(loaded - declared),
        node_refs=tuple(node_refs),
        var_refs=frozenset(var_refs),
        reads_all_vars=any(name_id not in literal_reads for name_id in vars_names),
        method_reads=tuple(method_reads),
        reads_secrets=secrets is not None,
        secret_problems=secrets.problems if secrets is not None else (),
    )


def _unknown_callable(kind: str, name: str, known: Mapping[str, Any]) -> str:
    return f"unknown {kind} `{name}`" + _did_you_mean(name, known)


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    import difflib  # only on an error: its import costs more than a whole clean lint

    matches = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean `{matches[0]}`?" if matches else ""


# --- The rules ----------------------------------------------------------------------------------

#: Who reads through an expression: a node's parameters, an edge condition of a node, a
#: workflow-level value that may read any node (vars, outputs), or a trigger's condition.
_ReaderKind = Literal["node", "edge", "any", "trigger"]


@dataclass(frozen=True, slots=True)
class _Reader:
    kind: _ReaderKind
    node: str = ""
    in_vars: bool = False
    #: The names its templates may read, and what it is called in a message about secrets.
    scope: tuple[str, ...] = TEMPLATE_SCOPE
    place: str = "node parameters"


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
        needs_label = (
            info.error
            or info.unknown_callables
            or info.names
            or info.node_refs
            or info.reads_secrets
        )
        label = _describe(base, sub) if needs_label else base
        if info.error is not None:
            self.findings.append(
                Finding("template-syntax", f"{label}: template does not parse: {info.error}", path)
            )
            return
        for problem in info.unknown_callables:
            self.findings.append(Finding("template-syntax", f"{label}: {problem}", path))
        scope = reader.scope
        unknown = info.names.difference(scope)
        if info.reads_secrets:
            if _SECRETS not in scope:
                # Even a `secrets` the template assigns itself: the engine refuses it the same.
                unknown |= {_SECRETS}
            for problem in info.secret_problems if _SECRETS in scope else ():
                self.findings.append(Finding("secret-transformed", f"{label}: {problem}", path))
        for name in sorted(unknown):
            message = _unknown_name(label, name, scope, reader)
            self.findings.append(Finding("template-unknown-name", message, path))
        self.var_reads |= info.var_refs
        self.reads_all_vars = self.reads_all_vars or info.reads_all_vars
        node_refs = info.node_refs + self.method_keys(info.method_reads)
        if not reader.in_vars:  # `nodes` in vars is already an error that says why
            self.reads.extend(_NodeRead(ref, reader, base, sub, path) for ref in node_refs)

    def method_keys(self, method_reads: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
        """The node ids among `nodes.<method name>` reads (recording `vars.<method name>`
        reads): a key of that name is read, as the sandbox reads it; without one, the method."""
        if not method_reads:
            return ()
        node_ids = {node.id for node in self.workflow.nodes}
        refs = []
        for target, name in method_reads:
            if target == "nodes":
                if name in node_ids:
                    refs.append(name)
            elif name in self.workflow.vars:
                self.var_reads.add(name)
            else:
                self.reads_all_vars = True  # `vars.items()`: the method reads them all
        return tuple(refs)

    def condition(self, source: str, path: DocPath, label: str, reader: _Reader) -> None:
        info = conditions.analyse_condition(source)
        if info.error is not None:
            self.findings.append(Finding("condition-syntax", f"{label}: {info.error}", path))
            return
        if _SECRETS in source:  # the cheap test first: placement imports jinja2
            from runner.spec import placement

            if placement.condition_reads_secrets(source):
                message = (
                    f"{label} reads `secrets`, but secrets never reach conditions (a condition "
                    f"on a secret tells its value away); {placement.ALLOWED}, in a node's "
                    "parameters"
                )
                self.findings.append(Finding("secret-transformed", message, path))
        self.var_reads |= info.var_refs
        self.reads_all_vars = self.reads_all_vars or info.reads_all_vars
        node_refs = info.node_refs + self.method_keys(info.method_reads)
        self.reads.extend(_NodeRead(ref, reader, label, (), path) for ref in node_refs)

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


def _unknown_name(label: str, name: str, scope: tuple[str, ...], reader: _Reader) -> str:
    valid = ", ".join(scope)
    in_vars = reader.in_vars
    if name == _SECRETS:
        return (
            f"{label} reads `secrets`, but secrets never reach {reader.place}, which are stored "
            "and read back; a secret may only be placed whole, as `{{ secrets.NAME }}`, in the "
            f"parameters of the node that needs it (valid names here: {valid})"
        )
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
    """Templates and conditions: syntax, names in scope, secrets only placed, node references
    and unused vars."""
    scan = _Scan(workflow)
    for i, node in enumerate(workflow.nodes):
        reader = _Reader("node", node.id)
        scan.templates(
            node.parameters, ("nodes", i, "parameters"), f"node `{node.id}` parameter", reader
        )
        if node.idempotency_key is not None and is_template(node.idempotency_key):
            label = f"node `{node.id}` idempotencyKey"
            key_reader = _Reader("node", node.id, scope=STORED_SCOPE, place="idempotency keys")
            scan.template(node.idempotency_key, ("nodes", i, "idempotencyKey"), label, key_reader)
        edge_reader = _Reader("edge", node.id)
        for j, edge in enumerate(node.edges):
            if edge.condition is not None:
                label = f"node `{node.id}` edge {j} (to `{edge.target_node}`) condition"
                path: DocPath = ("nodes", i, "edges", j, "condition")
                scan.condition(edge.condition, path, label, edge_reader)
    vars_reader = _Reader("any", in_vars=True, scope=VARS_SCOPE, place="vars")
    scan.templates(workflow.vars, ("vars",), "vars", vars_reader)
    outputs_reader = _Reader("any", scope=STORED_SCOPE, place="workflow outputs")
    scan.templates(workflow.outputs, ("outputs",), "output", outputs_reader)
    for k, trigger in enumerate(workflow.triggers):
        if isinstance(trigger, WebhookTrigger) and trigger.activation_condition is not None:
            label = f"trigger `{trigger.id}` activationCondition"
            path = ("triggers", k, "activationCondition")
            scan.condition(trigger.activation_condition, path, label, _Reader("trigger"))
    scan.node_reads()
    scan.unused_vars()
    return scan.findings
