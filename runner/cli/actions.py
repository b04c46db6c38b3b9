"""`dwf actions`: the action catalog — every registered type with its parameter schema."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

import click

from runner.cli.definitions import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE


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
    from runner.errors import ActionRegistryError, StoreError

    try:
        entries = _from_db() if from_db else _from_registry()
    except ActionRegistryError as exc:
        click.echo(f"dwf actions: {exc}", err=True)
        sys.exit(EXIT_FINDINGS)
    except StoreError as exc:
        click.echo(f"dwf actions: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if from_db and not entries:
        click.echo(
            "dwf actions: the catalog is empty; `dwf serve` and `dwf worker` write it", err=True
        )
    if output == "json":
        click.echo(json.dumps(entries, indent=2, default=str))
    else:
        for entry in entries:
            click.echo(_describe(entry))
    sys.exit(EXIT_OK)


def _from_registry() -> list[dict[str, Any]]:
    from runner.actions import registry

    return [
        {
            "type": e.action_type,
            "connector": e.connector,
            "version": e.version,
            "description": e.description,
            "package": e.package,
            "packageVersion": e.package_version,
            "entryPoint": e.entry_point,
            "parameters": e.parameters_schema,
            "outputs": e.outputs_schema,
        }
        for e in registry.catalog()
    ]


def _from_db() -> list[dict[str, Any]]:
    import asyncio

    from runner.settings import Settings
    from runner.store import catalog
    from runner.store.database import Database

    async def read() -> list[dict[str, Any]]:
        async with Database.open(Settings.from_env()) as db, db.connection() as conn:
            rows = await catalog.read(conn)
        return [
            {
                "type": r["action_type"],
                "connector": r["connector"],
                "version": r["version"],
                "description": r["description"],
                "package": r["package"],
                "packageVersion": r["package_version"],
                "entryPoint": r["entry_point"],
                "parameters": r["parameters_schema"],
                "outputs": r["outputs_schema"],
            }
            for r in rows
        ]

    return asyncio.run(read())


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
