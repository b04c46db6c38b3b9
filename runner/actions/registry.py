"""The action registry: built-ins plus every class registered under `dataworkflows.actions`.

Lint, the catalog and the engine all read this one registry. Entry points are scanned only when
a type is not built in (or the whole catalog is asked for): importing importlib.metadata and
walking the installed distributions costs more than the rest of a small lint.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.actions import core, http, monday, slack
from runner.actions.base import Action
from runner.errors import ActionRegistryError

ENTRY_POINT_GROUP = "dataworkflows.actions"
#: The actions that ship with the runner, known without scanning entry points (fast lint).
BUILTINS: dict[str, type[Action]] = {
    **core.BUILTINS,
    **{cls.type: cls for cls in (http.Http, slack.PostMessage, monday.GetItems, monday.CreateItem)},
}
_OWN_PACKAGE = "dataworkflows"


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One action type as the catalog records it (SPEC §10)."""

    action_type: str
    connector: str  # the type's prefix: `slack` for `slack.post-message`
    version: str
    description: str
    parameters_schema: Mapping[str, Any]
    outputs_schema: Mapping[str, Any]
    package: str  # the distribution that provides it
    package_version: str
    entry_point: str  # module:Class


@functools.cache
def _plugins() -> dict[str, type[Action]]:
    return {name: cls for name, (cls, _) in _scan().items()}


@functools.cache
def _scan() -> dict[str, tuple[type[Action], tuple[str, str]]]:
    """Plugins by type, with the (name, version) of the distribution that registered each."""
    from importlib.metadata import entry_points

    found: dict[str, tuple[type[Action], tuple[str, str]]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTINS:
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
        dist = ep.dist
        origin = (dist.name, dist.version) if dist is not None else ("unknown", "")
        found[ep.name] = (cls, origin)
    return found


def find(action_type: str) -> type[Action] | None:
    """The class registered for an action type, or None."""
    cls = BUILTINS.get(action_type)
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
    return {**BUILTINS, **_plugins()}


def catalog() -> list[CatalogEntry]:
    """Every registered action type with its schemas and where it comes from, sorted by type."""
    from runner import __version__

    origins = {name: origin for name, (_, origin) in _scan().items()}
    entries = []
    for name, cls in sorted(all_types().items()):
        package, package_version = origins.get(name, (_OWN_PACKAGE, __version__))
        entries.append(
            CatalogEntry(
                action_type=name,
                connector=name.split(".", 1)[0],
                version=str(cls.version),
                description=cls.description or (cls.__doc__ or "").strip().split("\n")[0],
                parameters_schema=cls.parameters_schema,
                outputs_schema=cls.outputs_schema,
                package=package,
                package_version=package_version,
                entry_point=f"{cls.__module__}:{cls.__qualname__}",
            )
        )
    return entries


def clear_cache() -> None:
    """Forget the scanned entry points (a package was installed or removed meanwhile)."""
    _plugins.cache_clear()
    _scan.cache_clear()
