"""Secrets in expressions: placed whole, never transformed (docs/security.md).

A template may use a secret only by placing it: `{{ secrets.NAME }}` or `{{ secrets['NAME'] }}`
as a whole `{{ … }}` output with nothing applied to it, in the template's text or in the body of
an `{% if %}`, `{% for %}` or `{% with %}`. Text and other outputs around it are fine
(`Bearer {{ secrets.token }}`). Any other use is refused: a filter, test, attribute, method,
index or slice on it, an operator, an argument, `{% set %}`, a loop over it, a condition on it,
a name computed at run time (`secrets[trigger.name]`), `{{ secrets }}` itself, and a placement
inside a block whose output can be transformed (`{% macro %}`, `{% call %}`, `{% filter %}`,
a `{% set %}` block, `{% block %}`, `{% autoescape %}`, a recursive loop).

The masker knows the forms an exact value travels in (`runner.credentials.masking`); a
transformed value has forms it cannot know. Lint reports each refused use as
`secret-transformed` (`runner.spec.expressions`) and the engine refuses to render the template
(`runner.engine.templates`), both from `analyse`. JavaScript conditions never see secrets:
`condition_reads_secrets` finds a condition that tries. This module imports jinja2: import it
where a template is parsed anyway (or a condition names `secrets`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes

#: The scope name secrets are read through.
SECRETS = "secrets"
ALLOWED = "a secret may only be placed whole, as `{{ secrets.NAME }}` with nothing applied to it"
_ADVICE = "; transform it inside an action instead"
_COMPARISONS = {
    "eq": "==",
    "ne": "!=",
    "gt": ">",
    "gteq": ">=",
    "lt": "<",
    "lteq": "<=",
    "in": "in",
    "notin": "not in",
}
# Block statements whose output can be captured and transformed, by Jinja node class name.
_CAPTURING = {
    "Macro": "a `{% macro %}`",
    "CallBlock": "a `{% call %}` block",
    "FilterBlock": "a `{% filter %}` block",
    "AssignBlock": "a `{% set %}` block",
    "Block": "a `{% block %}`",
    "ScopedEvalContextModifier": "an `{% autoescape %}` block",
    "EvalContextModifier": "an `{% autoescape %}` block",
}
# String literals and comments are matched whole (and skipped), so `'secrets'` is no read.
_JS_SECRETS = re.compile(
    r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|//[^\n]*|/\*.*?\*/"""
    r"|(?<![\w$.])(secrets)(?![\w$])",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class SecretUse:
    """How a template that names `secrets` uses them: each refused use in a sentence that
    names the secret and what is applied to it, never a value (none: every use is a placement)."""

    problems: tuple[str, ...] = ()


def analyse(template: nodes.Template) -> SecretUse | None:
    """The secret uses of a parsed template; None when it never names `secrets`."""
    parents: dict[int, nodes.Node] = {}
    found: list[nodes.Name] = []
    for node in _walk(template, parents):
        if isinstance(node, nodes.Name) and node.name == SECRETS:
            found.append(node)
    if not found:
        return None
    problems = (_problem(name, parents) for name in found)
    return SecretUse(tuple(dict.fromkeys(p for p in problems if p is not None)))


def condition_reads_secrets(source: str) -> bool:
    """Whether a JavaScript condition reads `secrets` (it never can: conditions get no secrets)."""
    if SECRETS not in source:
        return False
    return any(match.group(1) for match in _JS_SECRETS.finditer(source))


def _walk(root: nodes.Node, parents: dict[int, nodes.Node]) -> Iterator[nodes.Node]:
    """Every node under `root` in document order, recording each one's parent; iterative, so
    depth is no limit."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        children = list(node.iter_child_nodes())
        for child in children:
            parents[id(child)] = node
        stack.extend(reversed(children))


def _problem(name: nodes.Name, parents: dict[int, nodes.Node]) -> str | None:
    """Why this use of `secrets` is refused, or None when it is a placement."""
    if name.ctx != "load":
        return (
            "`secrets` is assigned here (by `{% set %}`, a loop or a macro argument); the name "
            f"`secrets` cannot be redefined, and {ALLOWED}"
        )
    parent = parents.get(id(name))
    ref: nodes.Node = name
    label = "`secrets`"
    if isinstance(parent, nodes.Getattr) and parent.node is name:
        ref, label = parent, f"`secrets.{parent.attr}`"
    elif isinstance(parent, nodes.Getitem) and parent.node is name:
        key = parent.arg
        if not (isinstance(key, nodes.Const) and isinstance(key.value, str)):
            return (
                "`secrets[…]` names its secret with an expression, which could pick any secret "
                f"or a part of one; name it as written text, `secrets.NAME` or "
                f"`secrets['NAME']`: {ALLOWED}"
            )
        ref, label = parent, f"`secrets[{key.value!r}]`"
    else:
        if isinstance(parent, nodes.Output):
            return (
                "`{{ secrets }}` is the set of all secrets, not one of them; name the one you "
                f"need: {ALLOWED}"
            )
        return f"`secrets` {_applied(parent, name)}: {ALLOWED}"
    holder = parents.get(id(ref))
    if isinstance(holder, nodes.Output):
        block = _capturing_block(holder, parents)
        if block is None:
            return None
        return (
            f"{label} is placed inside {block}, whose output can be transformed: "
            f"{ALLOWED}, outside such blocks"
        )
    return f"{label} {_applied(holder, ref)}: {ALLOWED}{_ADVICE}"


def _capturing_block(output: nodes.Output, parents: dict[int, nodes.Node]) -> str | None:
    """The enclosing block whose rendered output a template can still transform, if any."""
    node: nodes.Node | None = parents.get(id(output))
    while node is not None and not isinstance(node, nodes.Template):
        if isinstance(node, nodes.For) and node.recursive:
            return "a recursive `{% for %}` (its `loop(…)` output can be filtered)"
        if not isinstance(node, nodes.If | nodes.For | nodes.With | nodes.Scope):
            return _CAPTURING.get(type(node).__name__, f"a `{type(node).__name__}` statement")
        node = parents.get(id(node))
    return None


def _applied(holder: Any, ref: nodes.Node) -> str:
    """What `holder` does to the secret `ref` (its child), in a few words."""
    match holder:
        case nodes.Filter() if holder.node is ref:
            return f"has the filter `{holder.name}` applied"
        case nodes.Filter():
            return f"is an argument of the filter `{holder.name}`"
        case nodes.Test() if holder.node is ref:
            return f"is tested with `is {holder.name}`"
        case nodes.Test():
            return f"is an argument of the test `{holder.name}`"
        case nodes.Getattr():
            return f"has the method or attribute `.{holder.attr}` applied"
        case nodes.Getitem() if holder.node is ref:
            what = "sliced" if isinstance(holder.arg, nodes.Slice) else "indexed"
            return f"is {what} (`[…]`)"
        case nodes.Getitem():
            return "is used as a key (`x[…]`)"
        case nodes.Slice():
            return "is a slice bound"
        case nodes.Call() if holder.node is ref:
            return "is called"
        case nodes.Call():
            return "is an argument of a call"
        case nodes.Keyword():
            return f"is the keyword argument `{holder.key}`"
        case nodes.Concat():
            return "is joined with `~`"
        case nodes.BinExpr() | nodes.UnaryExpr():
            return f"is an operand of `{holder.operator}`"
        case nodes.Compare():
            return f"is compared with `{_COMPARISONS.get(holder.ops[0].op, holder.ops[0].op)}`"
        case nodes.Operand():
            return f"is compared with `{_COMPARISONS.get(holder.op, holder.op)}`"
        case nodes.CondExpr():
            return "is used in an inline `if … else`"
        case nodes.For() if holder.iter is ref:
            return "is looped over by `{% for %}`"
        case nodes.For():
            return "is tested by a `{% for … if %}` filter"
        case nodes.If():
            return "is tested by `{% if %}`"
        case nodes.Assign():
            return "is stored by `{% set %}`"
        case nodes.With():
            return "is stored by `{% with %}`"
        case nodes.Macro():
            return "is the default of a macro argument"
        case nodes.List() | nodes.Tuple() | nodes.Dict() | nodes.Pair():
            return "is put into a list, tuple or dict"
        case nodes.Output():
            return "is printed"
    return f"is used in a `{type(holder).__name__}` expression"
