"""The `dwf` command line (click). Each command imports its machinery lazily to start fast."""

from __future__ import annotations

import click

from runner.cli import actions, db, definitions, executions, serve, sync, token, triggers


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dataworkflows", prog_name="dwf")
def main() -> None:
    """DataWorkflows: lint, compile and run declarative workflows."""


for _command in (
    *definitions.COMMANDS,
    *executions.COMMANDS,
    *db.COMMANDS,
    *serve.COMMANDS,
    *sync.COMMANDS,
    *actions.COMMANDS,
    *triggers.COMMANDS,
    *token.COMMANDS,
):
    main.add_command(_command)
