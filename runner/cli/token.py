"""`dwf token`: a development token signed with the configured HS256 secret (SPEC §12)."""

from __future__ import annotations

import click

from runner.cli import exits, params

#: The roles a token may carry (as `runner.auth.identity.Role`, kept here so `--help` is fast).
ROLES = ("viewer", "operator", "admin")
DEFAULT_TTL_SECONDS = 3600.0


@click.command()
@click.option("--sub", "subject", required=True, help="The principal (the token's `sub`).")
@click.option(
    "--role", "roles", multiple=True, type=click.Choice(ROLES), default=("viewer",),
    show_default=True, help="A role to grant; repeat for several.",
)  # fmt: skip
@click.option("--tenant", help="The tenant claim (default: DWF_TENANT, else `default`).")
@click.option(
    "--ttl", type=params.Duration(minimum=1), default=DEFAULT_TTL_SECONDS,
    help="How long it is valid, e.g. 15m, 8h, or seconds (default 1h).",
)  # fmt: skip
def token(subject: str, roles: tuple[str, ...], tenant: str | None, ttl: float) -> None:
    """Print a JWT for development and tests, signed with DWF_JWT_SECRET (HS256) and naming
    DWF_JWT_ISSUER and DWF_JWT_AUDIENCE, as strict mode checks them.

    Exit 0 with the token on stdout; 2 when no secret is set.
    """
    from runner.auth.tokens import mint
    from runner.errors import UsageError

    settings = exits.settings()
    try:
        minted = mint(
            settings, subject=subject, roles=roles, tenant=tenant or settings.tenant, ttl=ttl
        )
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(minted)


COMMANDS = (token,)
