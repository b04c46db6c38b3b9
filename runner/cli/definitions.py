"""Commands about workflow documents: `dwf lint`, `dwf graph`, `dwf schema`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from runner.cli import exits


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "github", "sarif"]),
    default=None,
    help="Output format (default: text; github when GITHUB_ACTIONS=true).",
)
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: CPUs).",
)
@click.option(
    "--color/--no-color", default=None, help="Colour text output (default: on a terminal)."
)
def lint(
    paths: tuple[Path, ...], fmt: str | None, strict: bool, jobs: int | None, color: bool | None
) -> None:
    """Check workflow files: YAML, schema, graph, actions, expressions, triggers.

    PATHS are files or folders (default: ./workflows). Exit 0 when clean, 1 on findings,
    2 on a usage or I/O error.
    """
    from runner import __version__
    from runner.lint import linter, report

    if not paths:
        if not Path("workflows").is_dir():
            raise click.UsageError("no PATH given and there is no ./workflows folder to lint")
        paths = (Path("."),)  # its workflows/ folder, and dwf.yaml beside it
    if fmt is None:
        fmt = "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"
    try:
        result = linter.lint_paths(paths, jobs=jobs)
    except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        from runner.errors import UsageError

        exits.fail("lint", UsageError(str(exc)))
    output = report.render(
        fmt,
        result.diagnostics,
        _SourceLines().line,
        files_checked=result.files_checked,
        tool_version=__version__,
        color=sys.stdout.isatty() if color is None else color,
    )
    if output:
        click.echo(output)
    failed = result.errors > 0 or (strict and result.warnings > 0)
    sys.exit(exits.EXIT_FAILED if failed else exits.EXIT_OK)


class _SourceLines:
    """Reads source lines for the text format's excerpts, each file once."""

    def __init__(self) -> None:
        self._files: dict[str, list[str]] = {}

    def line(self, path: str, line: int) -> str | None:
        """Line `line` (1-based) of `path`, or None when it cannot be read."""
        from runner.lint import linter
        from runner.spec import positions

        if path not in self._files:
            # Read as lint reads it, so a file lint refused (too large, a FIFO) is not read here.
            text = linter.read_text(path)
            self._files[path] = positions.split_lines(text) if text else []
        lines = self._files[path]
        return lines[line - 1] if 0 < line <= len(lines) else None


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True
)
def graph(file: Path, fmt: str) -> None:
    """Draw a workflow's compiled plan as Mermaid or Graphviz DOT."""
    from runner.lint import linter, report
    from runner.plan import compiler, render
    from runner.spec import loader

    # One file alone: rules across files (e.g. subworkflow targets) belong to `dwf lint`.
    result = linter.lint_paths([file], jobs=1, across_files=False)
    if result.errors:
        lines = _SourceLines()
        click.echo(
            report.render("text", result.diagnostics, lines.line, files_checked=1, tool_version=""),
            err=True,
        )
        sys.exit(exits.EXIT_FAILED)
    data = loader.load(loader.decode(str(file), loader.read_file(file)).text)
    plan = compiler.get_plan(data)
    click.echo(render.to_mermaid(plan) if fmt == "mermaid" else render.to_dot(plan))


@click.command()
def schema() -> None:
    """Print the workflow document's JSON Schema (2020-12)."""
    from runner.spec import schema as workflow_schema

    click.echo(workflow_schema.schema_text(), nl=False)


COMMANDS = (lint, graph, schema)
