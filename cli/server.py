"""`orchestra serve` and `orchestra fake-openai`: the gateway and the OpenAI fake, on uvicorn.

The gateway is started by import string, so this module never imports the server itself.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from cli import listener, output
from cli.context import CliContext
from cli.errors import fail
from gateway.core.errors import ConfigurationError, InvalidRequest

Host = Annotated[str, typer.Option("--host", help="Address to bind.")]


def serve(
    ctx: typer.Context,
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 1,
    ui: Annotated[
        Path | None, typer.Option("--ui", help="Serve this built web UI at / (one origin).")
    ] = None,
) -> None:
    """Run the gateway."""
    from gateway.server.head_limits import HeadLimits
    from gateway.server.protocols import graceful_shutdown_s, http_protocol
    from gateway.settings import export_raw_environment, export_to_environment

    cli = CliContext.of(ctx)
    if workers > 1 and not cli.settings.redis_url:
        fail(
            ConfigurationError(
                f"--workers {workers} needs ORCHESTRA_REDIS_URL: without Redis each worker would "
                "keep its own quota counters, so every limit would be multiplied by the number "
                "of workers. Set ORCHESTRA_REDIS_URL=redis://host:6379/0, or use --workers 1."
            )
        )
    if workers > 1:
        # prometheus-client's multiprocess mode: every worker writes its values here.
        shared = Path(tempfile.mkdtemp(prefix="orchestra-metrics-"))
        export_to_environment({"metrics_multiprocess_dir": str(shared)})
        export_raw_environment({"PROMETHEUS_MULTIPROC_DIR": str(shared)})
    if ui is not None:
        if not (ui / "index.html").is_file():
            fail(ConfigurationError(f"--ui {ui}: no index.html there; build the UI first."))
        export_to_environment({"ui_dir": str(ui.resolve())})
    cli.keyring()  # a missing or malformed master key is reported here, not in a traceback
    cli.run(_check_schema)
    # Bound before uvicorn starts the app: a busy port fails at once, in one line (after the
    # quick checks above, so that their failures leave no socket behind).
    sock = _bind(host, port)
    output.print_info(f"Orchestra gateway on http://{host}:{port} ({workers} worker(s))")
    listener.run(
        sock,
        "gateway.server.app:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
        # Request heads are bounded before they are parsed (431/414); h11's own bound too.
        http=http_protocol(HeadLimits.of(cli.settings)),
        h11_max_incomplete_event_size=cli.settings.max_header_bytes,
        timeout_keep_alive=cli.settings.keep_alive_s,
        # Longer than the gateway's own drain, which ends open streams with an error event,
        # and than an idle connection's keep-alive (left to close by itself, see protocols.py).
        timeout_graceful_shutdown=graceful_shutdown_s(cli.settings),
    )


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts: a busy port is one clear error."""
    try:
        return listener.bind(host, port)
    except ConfigurationError as exc:
        fail(exc)


async def _check_schema(_db: object) -> None:
    return None  # CliContext.run has checked the schema already


def fake_openai(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 9100,
    tokens: Annotated[int, typer.Option("--tokens", min=1, help="Tokens per answer.")] = 50,
    first_token_ms: Annotated[float, typer.Option("--first-token-ms", min=0)] = 0.0,
    token_ms: Annotated[
        float, typer.Option("--token-ms", min=0, help="Delay between tokens.")
    ] = 0.0,
    fail_rate: Annotated[float, typer.Option("--fail-rate", min=0, max=1)] = 0.0,
    api_key: Annotated[
        list[str] | None,
        typer.Option("--api-key", help="Accept only these keys (default: any sk-...)."),
    ] = None,
    answers: Annotated[
        str,
        typer.Option(
            "--answers",
            help="random: words (tests, benchmarks); readable: Markdown documents (the demo).",
        ),
    ] = "random",
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="Serve HTTPS with this PEM certificate.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Its PEM private key.")] = None,
) -> None:
    """Run the OpenAI-compatible fake used by tests, benchmarks and the demo."""
    from gateway.fakes.openai_server import ANSWER_MODES, FakeOpenAIConfig
    from gateway.fakes.openai_server import serve as serve_fake

    if answers not in ANSWER_MODES:
        fail(InvalidRequest(f"Unknown --answers {answers!r}: use {' or '.join(ANSWER_MODES)}."))
    config = FakeOpenAIConfig(
        answers=answers,
        tokens=tokens,
        first_token_ms=first_token_ms,
        token_ms=token_ms,
        fail_rate=fail_rate,
        api_keys=frozenset(api_key) if api_key else None,
    )
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together.")
    tls = None if tls_cert is None or tls_key is None else (str(tls_cert), str(tls_key))
    sock = _bind(host, port)
    scheme = "http" if tls is None else "https"
    output.print_info(f"OpenAI fake on {scheme}://{host}:{port}/v1")
    serve_fake(config, host=host, port=port, sock=sock, tls=tls)
