"""`orchestra keys set|rotate-master`: provider keys and the master key."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import output
from cli.context import CliContext
from cli.errors import fail
from cli.secrets_input import read_secret
from gateway.core.errors import GatewayError, InvalidRequest

app = typer.Typer(help="Store provider keys and rotate the master key.", no_args_is_help=True)


@app.command("set")
def set_(
    ctx: typer.Context,
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the key from stdin (default when piped).")
    ] = False,
) -> None:
    """Store APP's OpenAI key, encrypted (read from stdin or a hidden prompt, never argv)."""
    from gateway.services import provider_keys

    cli = CliContext.of(ctx)
    key = read_secret("OpenAI key", from_stdin=stdin)
    if not key:
        fail(InvalidRequest("The OpenAI key is empty."))
    keyring = cli.keyring()
    cli.run(lambda db: provider_keys.set_provider_key(db, keyring, app_name=app_name, key=key))
    output.print_success(f"OpenAI key of {app_name!r} stored (encrypted).")


@app.command("rotate-master")
def rotate_master(ctx: typer.Context) -> None:
    """Re-encrypt every stored key (provider keys, session secrets) under a new master key.

    With the key file: a new key is generated and written first beside the old one, every key is
    re-encrypted in one transaction, and only then is the old key dropped from the file. With
    ORCHESTRA_MASTER_KEY: put the new key first (NEW,OLD), run this, then drop OLD.
    """
    from gateway.security.keyring import Keyring, generate_master_key
    from gateway.security.master_key import resolve_master_keys, write_master_key_file
    from gateway.services import master_keys

    cli = CliContext.of(ctx)
    settings = cli.settings
    try:
        current = resolve_master_keys(settings.master_key, settings.master_key_file)
        if settings.master_key is None:
            keys = [generate_master_key(), *current]
            # Both keys decrypt from here on: no moment where a stored key is unreadable.
            write_master_key_file(settings.master_key_file, keys)
        else:
            keys = current
    except GatewayError as error:
        fail(error)
    report = cli.run(lambda db: master_keys.reencrypt_all(db, Keyring(keys)))
    counts = f"({report.provider_keys} provider key(s), {report.session_secrets} session secret(s))"
    if settings.master_key is None:
        write_master_key_file(settings.master_key_file, keys[:1])
        output.print_success(
            f"{report.reencrypted} key(s) re-encrypted under a new master key {counts}; "
            f"{settings.master_key_file} now holds only the new key."
        )
    else:
        output.print_success(
            f"{report.reencrypted} key(s) re-encrypted under the first key of "
            f"ORCHESTRA_MASTER_KEY {counts}; the other keys can now be removed from it."
        )
