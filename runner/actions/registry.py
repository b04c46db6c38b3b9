"""The action registry: built-ins plus every class registered under `dataworkflows.actions`.

Lint, the catalog and the engine all read this one registry. Entry points are scanned only when
a type is not built in (or the whole catalog is asked for): importing importlib.metadata and
walking the installed distributions costs more than the rest of a small lint.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.actions import core, http, monday, slack
from runner.actions.base import Action
from runner.errors import ActionRegistryError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

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
def _scan() -> tuple[dict[str, tuple[type[Action], tuple[str, str]]], dict[str, str]]:
    """Plugins by type, with the (name, version) of the distribution that registered each; and
    the plugins that cannot be used, by type, with why."""
    from importlib.metadata import entry_points

    found: dict[str, tuple[type[Action], tuple[str, str]]] = {}
    broken: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTINS:
            continue
        try:
            cls = _load(ep)
        except ActionRegistryError as exc:
            # Kept apart so one broken plugin does not make every other type unusable too.
            broken[ep.name] = str(exc)
            continue
        dist = ep.dist
        origin = (dist.name, dist.version) if dist is not None else ("unknown", "")
        found[ep.name] = (cls, origin)
    return found, broken


def _load(ep: EntryPoint) -> type[Action]:
    """The class an entry point registers; ActionRegistryError naming the plugin otherwise."""
    plugin = f"action plugin {ep.name!r} ({ep.value})"
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plugin must not take the runner down with it
        raise ActionRegistryError(f"{plugin} failed to load: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Action)):
        raise ActionRegistryError(f"{plugin} is not a subclass of runner.actions.base.Action")
    declared = getattr(cls, "type", None)
    if not isinstance(declared, str):
        what = "no `type`" if declared is None else f"`type` {declared!r}, not a string"
        raise ActionRegistryError(f"{plugin} declares {what}; give the class `type = {ep.name!r}`")
    if declared != ep.name:
        raise ActionRegistryError(
            f"{plugin} declares type {declared!r} but is registered as {ep.name!r}"
        )
    return cls


def find(action_type: str) -> type[Action] | None:
    """The class registered for an action type, or None; ActionRegistryError when the plugin
    registered for it cannot be used (naming the plugin and why)."""
    cls = BUILTINS.get(action_type)
    if cls is not None:
        return cls
    found, broken = _scan()
    if action_type in broken:
        raise ActionRegistryError(broken[action_type])
    entry = found.get(action_type)
    return None if entry is None else entry[0]


def get(action_type: str) -> type[Action]:
    """The class for an action type; ActionRegistryError naming the known types otherwise."""
    cls = find(action_type)
    if cls is None:
        raise ActionRegistryError(
            f"unknown action type {action_type!r}; registered: {', '.join(usable_types())}"
        )
    return cls


def all_types() -> dict[str, type[Action]]:
    """Every registered action type, built-ins first; ActionRegistryError when a plugin
    cannot be used (the catalog must be whole)."""
    found, broken = _scan()
    if broken:
        raise ActionRegistryError(broken[min(broken)])
    return {**BUILTINS, **{name: cls for name, (cls, _) in found.items()}}


def usable_types() -> list[str]:
    """The names of every action type that can be used, sorted; broken plugins left out."""
    return sorted([*BUILTINS, *_scan()[0]])


def catalog() -> list[CatalogEntry]:
    """Every registered action type with its schemas and where it comes from, sorted by type."""
    from runner import __version__

    origins = {name: origin for name, (_, origin) in _scan()[0].items()}
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
    _scan.cache_clear()
