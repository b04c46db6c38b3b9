"""The action registry: built-ins plus every class registered under `dataworkflows.actions`.

Lint, the catalog and the engine all read this one registry. Entry points are scanned only when
a type is not built in (or the whole catalog is asked for): importing importlib.metadata and
walking the installed distributions costs more than the rest of a small lint.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from runner.actions import core
from runner.actions.base import Action
from runner.errors import ActionRegistryError

ENTRY_POINT_GROUP = "dataworkflows.actions"


@functools.cache
def _plugins() -> dict[str, type[Action]]:
    from importlib.metadata import entry_points

    found: dict[str, type[Action]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in core.BUILTINS:
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not take the runner down with it
            raise ActionRegistryError(
                f"action plugin {ep.name!r} ({ep.value}) failed to load: {exc}"
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, Action)):
            raise ActionRegistryError(
                f"action plugin {ep.name!r} ({ep.value}) is not a subclass of "
                "runner.actions.base.Action"
            )
        if cls.type != ep.name:
            raise ActionRegistryError(
                f"action plugin {ep.value} declares type {cls.type!r} "
                f"but is registered as {ep.name!r}"
            )
        found[ep.name] = cls
    return found


def find(action_type: str) -> type[Action] | None:
    """The class registered for an action type, or None."""
    cls = core.BUILTINS.get(action_type)
    return cls if cls is not None else _plugins().get(action_type)


def get(action_type: str) -> type[Action]:
    """The class for an action type; ActionRegistryError naming the known types otherwise."""
    cls = find(action_type)
    if cls is None:
        raise ActionRegistryError(
            f"unknown action type {action_type!r}; registered: {', '.join(sorted(all_types()))}"
        )
    return cls


def all_types() -> dict[str, type[Action]]:
    """Every registered action type, built-ins first."""
    return {**core.BUILTINS, **_plugins()}


def parameter_schemas(types: list[str] | None = None) -> Mapping[str, Mapping[str, Any] | None]:
    """Parameter JSON Schemas by type for the given types (None for an unknown type)."""
    names = sorted(all_types()) if types is None else types
    return {name: (cls.parameters_schema if (cls := find(name)) else None) for name in names}
