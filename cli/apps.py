"""`orchestra apps add|list|show|update|disable|enable|remove`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated

import typer

from cli import output
from cli.context import CliContext
from cli.errors import fail
from cli.secrets_input import read_secret
from gateway.core.errors import InvalidRequest

if TYPE_CHECKING:
    from gateway.services.apps import AppChanges
    from gateway.services.views import AppInfo

app = typer.Typer(
    help="Register and manage apps (the tenants of the gateway).", no_args_is_help=True
)

Name = Annotated[str, typer.Argument(help="The app's name (lowercase letters, digits, - and _).")]
Origins = Annotated[
    list[str] | None,
    typer.Option("--origin", help="Browser origin allowed to call the gateway (repeatable)."),
]
Model = Annotated[str | None, typer.Option("--model", help="Default model for this app.")]
AllowModels = Annotated[
    list[str] | None,
    typer.Option("--allow-model", help="Another model callers may ask for (repeatable)."),
]
BaseUrl = Annotated[
    str | None,
    typer.Option(
        "--base-url", help="OpenAI-compatible upstream (default https://api.openai.com/v1)."
    ),
]
SystemPrompt = Annotated[
    str | None, typer.Option("--system-prompt", help="Prepended to every conversation ('' clears).")
]
MaxOutput = Annotated[
    int | None, typer.Option("--max-output-tokens", help="Cap on max_tokens for each answer.")
]
LogContent = Annotated[
    str | None,
    typer.Option("--log-content", help="'metadata' (default) or 'full' (also prompt and answer)."),
]
Workflow = Annotated[
    str | None,
    typer.Option("--workflow", help="direct (default), conversation or moderated."),
]
Fallbacks = Annotated[
    list[str] | None,
    typer.Option(
        "--fallback-model", help="Tried in order when the model keeps failing (repeatable)."
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _changes(
    origins: list[str] | None,
    model: str | None,
    allow_models: list[str] | None,
    base_url: str | None,
    system_prompt: str | None,
    max_output_tokens: int | None,
    log_content: str | None,
    workflow: str | None = None,
    fallback_models: list[str] | None = None,
) -> AppChanges:
    from gateway.services.apps import AppChanges

    return AppChanges(
        origins=None if origins is None else tuple(origins),
        model=model,
        allowed_models=None if allow_models is None else tuple(allow_models),
        base_url=base_url,
        system_prompt=system_prompt,
        max_output_tokens=max_output_tokens,
        log_content=log_content,
        workflow=workflow,
        fallback_models=None if fallback_models is None else tuple(fallback_models),
    )


def _cache_seconds(text: str) -> int:
    """``--cache-ttl``: a duration (10m), or 0 for off."""
    from gateway.core.durations import parse_duration

    if text.strip() == "0":
        return 0
    try:
        return int(parse_duration(text).total_seconds())
    except InvalidRequest as exc:
        fail(InvalidRequest(f"--cache-ttl: {exc.message}"))


def _show(info: AppInfo) -> None:
    output.print_fields(f"App {info.name}", info.to_json())


@app.command("add")
def add(
    ctx: typer.Context,
    name: Name,
    origins: Origins = None,
    model: Model = None,
    allow_models: AllowModels = None,
    base_url: BaseUrl = None,
    system_prompt: SystemPrompt = None,
    max_output_tokens: MaxOutput = None,
    log_content: LogContent = None,
    workflow: Workflow = None,
    fallback_models: Fallbacks = None,
    openai_key_stdin: Annotated[
        bool, typer.Option("--openai-key-stdin", help="Read the app's OpenAI key from stdin.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Register an app and issue its first client token (printed once)."""
    from gateway.services import apps as app_service

    cli = CliContext.of(ctx)
    settings = cli.settings
    changes = _changes(
        origins,
        model,
        allow_models,
        base_url,
        system_prompt,
        max_output_tokens,
        log_content,
        workflow,
        fallback_models,
    )
    key = None
    keyring = None
    if openai_key_stdin:
        key = read_secret("OpenAI key", from_stdin=True)
        if not key:
            fail(InvalidRequest("The OpenAI key read from stdin is empty."))
        keyring = cli.keyring()
    defaults = app_service.AppDefaults(
        model=settings.default_model,
        base_url=settings.default_base_url,
        max_output_tokens=settings.default_max_output_tokens,
        allowed_upstream_hosts=settings.allowed_upstream_hosts,
    )
    registered = cli.run(
        lambda db: app_service.register_app(
            db, keyring, name=name, changes=changes, defaults=defaults, provider_key=key
        )
    )
    if as_json:
        output.print_json({"app": registered.app.to_json(), "token": registered.token.secret})
        return
    output.print_success(f"App {name!r} registered ({registered.app.id}).")
    if not registered.app.has_provider_key:
        output.print_info(f"No OpenAI key yet: run `orchestra keys set {name}`.")
    output.show_secret_once(
        f"Client token for {name} ({registered.token.info.id})", registered.token.secret
    )


@app.command("list")
def list_(ctx: typer.Context, as_json: Json = False) -> None:
    """List every app."""
    from gateway.services import apps as app_service

    apps = CliContext.of(ctx).run(app_service.list_apps)
    if as_json:
        output.print_json([info.to_json() for info in apps])
        return
    output.print_table(
        "Apps",
        ["name", "id", "model", "base url", "origins", "key", "state"],
        (
            (
                a.name,
                a.id,
                a.model,
                a.base_url,
                ", ".join(a.origins) or "-",
                "set" if a.has_provider_key else "missing",
                "disabled" if a.disabled else "enabled",
            )
            for a in apps
        ),
        whole=("name", "id", "model", "base url"),
    )


@app.command("show")
def show(ctx: typer.Context, name: Name, as_json: Json = False) -> None:
    """Show one app's settings."""
    from gateway.services import apps as app_service

    info = CliContext.of(ctx).run(lambda db: app_service.get_app(db, name))
    if as_json:
        output.print_json(info.to_json())
    else:
        _show(info)


@app.command("update")
def update(
    ctx: typer.Context,
    name: Name,
    origins: Origins = None,
    model: Model = None,
    allow_models: AllowModels = None,
    base_url: BaseUrl = None,
    system_prompt: SystemPrompt = None,
    max_output_tokens: MaxOutput = None,
    log_content: LogContent = None,
    workflow: Workflow = None,
    fallback_models: Fallbacks = None,
    oidc_issuer: Annotated[
        str | None,
        typer.Option(
            "--oidc-issuer",
            help="Accept this OpenID Connect provider's access tokens (its exact issuer URL); "
            "'' turns sign-in off.",
        ),
    ] = None,
    oidc_audience: Annotated[
        str | None, typer.Option("--oidc-audience", help="The audience tokens must name.")
    ] = None,
    oidc_user_claim: Annotated[
        str | None, typer.Option("--oidc-user-claim", help="The claim that names the user (sub).")
    ] = None,
    session_max_ttl: Annotated[
        int | None,
        typer.Option("--session-max-ttl", help="The longest session, in seconds (3600)."),
    ] = None,
    cache_ttl: Annotated[
        str | None,
        typer.Option(
            "--cache-ttl",
            help="Answer identical requests from the app's cache for this long (10m, 1h); "
            "0 turns the cache off.",
        ),
    ] = None,
    cache_nondeterministic: Annotated[
        bool | None,
        typer.Option(
            "--cache-nondeterministic/--cache-deterministic-only",
            help="Also cache requests with a temperature above 0 (default: only those at 0 "
            "or without one).",
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Change an app's settings (options not given are left as they are)."""
    from gateway.services import apps as app_service

    changes = _changes(
        origins,
        model,
        allow_models,
        base_url,
        system_prompt,
        max_output_tokens,
        log_content,
        workflow,
        fallback_models,
    )
    changes = dataclasses.replace(
        changes,
        oidc_issuer=oidc_issuer,
        oidc_audience=oidc_audience,
        oidc_user_claim=oidc_user_claim,
        session_max_ttl_s=session_max_ttl,
        cache_ttl_s=None if cache_ttl is None else _cache_seconds(cache_ttl),
        cache_nondeterministic=cache_nondeterministic,
    )
    cli = CliContext.of(ctx)
    allowed = cli.settings.allowed_upstream_hosts
    info = cli.run_announced(
        lambda db, announcer: app_service.update_app(
            db, name, changes, allowed_upstream_hosts=allowed, announcer=announcer
        )
    )
    if as_json:
        output.print_json(info.to_json())
    else:
        output.print_success(f"App {name!r} updated.")
        _show(info)


def _set_disabled(ctx: typer.Context, name: str, *, disabled: bool, as_json: bool) -> None:
    from gateway.services import apps as app_service

    info = CliContext.of(ctx).run_announced(
        lambda db, announcer: app_service.set_disabled(
            db, name, disabled=disabled, announcer=announcer
        )
    )
    if as_json:
        output.print_json(info.to_json())
    else:
        output.print_success(f"App {name!r} {'disabled' if disabled else 'enabled'}.")


@app.command("disable")
def disable(ctx: typer.Context, name: Name, as_json: Json = False) -> None:
    """Refuse every request of this app (its tokens get 403 app_disabled)."""
    _set_disabled(ctx, name, disabled=True, as_json=as_json)


@app.command("enable")
def enable(ctx: typer.Context, name: Name, as_json: Json = False) -> None:
    """Accept this app's requests again."""
    _set_disabled(ctx, name, disabled=False, as_json=as_json)


@app.command("remove")
def remove(
    ctx: typer.Context,
    name: Name,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete an app with its tokens, key and quota (its interaction records are kept)."""
    from gateway.services import apps as app_service

    if not yes and not typer.confirm(f"Remove app {name!r}, its tokens and its key?"):
        raise typer.Exit(code=1)
    CliContext.of(ctx).run_announced(
        lambda db, announcer: app_service.remove_app(db, name, announcer=announcer)
    )
    output.print_success(f"App {name!r} removed.")
