"""The root `orchestra` command. Sub-commands import only what they need, lazily where heavy.

The server and FastAPI are never imported here: `orchestra serve` hands uvicorn an import
string, so `orchestra --help` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli import apps, ask, demo, keys, logs, quotas, server, sessions, setup, tokens, usage

app = typer.Typer(
    name="orchestra",
    help="Orchestra: a self-hosted, multi-tenant gateway between your apps and OpenAI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("init")(setup.init)
app.add_typer(setup.db_app, name="db")
app.add_typer(apps.app, name="apps")
app.add_typer(tokens.app, name="tokens")
app.add_typer(sessions.app, name="sessions")
app.add_typer(keys.app, name="keys")
app.add_typer(quotas.app, name="quotas")
app.add_typer(logs.app, name="logs")
app.command("serve")(server.serve)
app.command("fake-openai")(server.fake_openai)
app.command("ask")(ask.ask)
app.command("usage")(usage.usage)
app.command("demo")(demo.demo)
app.command("demo-backend", hidden=True)(demo.demo_backend)


def _version(value: bool) -> None:
    if value:
        from gateway import __version__

        typer.echo(f"orchestra {__version__}")
        raise typer.Exit


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Configuration comes from ORCHESTRA_* variables and the TOML file in ORCHESTRA_CONFIG."""


def main() -> None:
    app()
