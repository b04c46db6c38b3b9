"""`dwf actions`: the action catalog — every registered type with its parameter schema."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

import click

from runner.cli import exits


@click.command()
@click.option(
    "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="json: every type with its parameter and output JSON Schemas.",
)  # fmt: skip
@click.option(
    "--from-db", is_flag=True,
    help="Read the catalog the last started server or worker wrote to the database.",
)  # fmt: skip
def actions(output: str, from_db: bool) -> None:
    """List the action types this runner can run (built-ins and installed connectors).

    Exit 0, 1 when a connector package fails to load, 2 when the database cannot be reached.
    """
    from runner.errors import ActionRegistryError

    try:
        entries = exits.run("actions", _from_db) if from_db else _from_registry()
    except ActionRegistryError as exc:  # a connector package that fails to load: exit 1
        exits.fail("actions", exc)
    if from_db and not entries:
        click.echo(
            "dwf actions: the catalog is empty; `dwf serve` and `dwf worker` write it", err=True
        )
    if output == "json":
        click.echo(json.dumps(entries, indent=2, default=str))
    else:
        for entry in entries:
            click.echo(_describe(entry))
    sys.exit(exits.EXIT_OK)


def _from_registry() -> list[dict[str, Any]]:
    import dataclasses

    from runner.actions import registry

    return [_document(dataclasses.asdict(e)) for e in registry.catalog()]


async def _from_db() -> list[dict[str, Any]]:
    from runner.daemon import Daemon
    from runner.store import catalog

    async with Daemon(exits.settings()) as daemon, daemon.db.connection() as conn:
        return [_document(row) for row in await catalog.read(conn)]


def _document(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A catalog entry (a registry entry or a catalog row: the same fields) as JSON."""
    return {
        "type": entry["action_type"],
        "connector": entry["connector"],
        "version": entry["version"],
        "description": entry["description"],
        "package": entry["package"],
        "packageVersion": entry["package_version"],
        "entryPoint": entry["entry_point"],
        "parameters": entry["parameters_schema"],
        "outputs": entry["outputs_schema"],
    }


def _describe(entry: Mapping[str, Any]) -> str:
    """`slack.post-message  (dataworkflows 0.1.0)` then the description and each parameter."""
    lines = [f"{entry['type']}  ({entry['package']} {entry['packageVersion']})"]
    if entry["description"]:
        lines.append(f"    {entry['description']}")
    schema = entry["parameters"] or {}
    required = set(schema.get("required", []))
    for name, prop in (schema.get("properties") or {}).items():
        kind = _kind(prop)
        need = "required" if name in required else "optional"
        text = f"    - {name} ({kind}, {need})"
        if prop.get("description"):
            text += f": {prop['description']}"
        lines.append(text)
    return "\n".join(lines)


def _kind(prop: Mapping[str, Any]) -> str:
    if "enum" in prop:
        return " | ".join(map(str, prop["enum"]))
    kind = prop.get("type", "any")
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


COMMANDS = (actions,)
