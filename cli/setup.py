"""`orchestra init` and `orchestra db upgrade`: create the home, the master key and the schema."""

from __future__ import annotations

import typer

from cli import output
from cli.context import CliContext
from cli.errors import fail
from gateway.core.errors import GatewayError

db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)


def init(ctx: typer.Context) -> None:
    """Create ORCHESTRA_HOME, the master key file (if no key is configured) and the schema.

    Safe to run again: nothing that exists is overwritten.
    """
    from gateway.security.master_key import create_master_key_file, resolve_master_keys
    from gateway.services.database import upgrade_schema

    cli = CliContext.of(ctx)
    settings = cli.settings
    home = settings.home
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        if settings.master_key is None:
            created = create_master_key_file(settings.master_key_file)
            note = "created" if created else "kept"
            output.print_success(f"Master key {note}: {settings.master_key_file} (mode 0600).")
        else:
            resolve_master_keys(settings.master_key, settings.master_key_file)  # validate it
            output.print_success("Master key taken from ORCHESTRA_MASTER_KEY.")
    except GatewayError as error:
        fail(error)
    cli.run(upgrade_schema, check_schema=False)
    output.print_success(f"Database ready: {_display_url(settings.resolved_database_url)}")


def _display_url(url: str) -> str:
    """The URL without its password, for display."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url


@db_app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Apply pending migrations."""
    from gateway.services.database import upgrade_schema

    cli = CliContext.of(ctx)
    cli.run(upgrade_schema, check_schema=False)
    output.print_success(
        f"Database schema is current: {_display_url(cli.settings.resolved_database_url)}"
    )
