"""`orchestra demo`: the OpenAI fake, the gateway on SQLite and the Angular demo, in one command.

The demo is laid out like a real app: the page is served by the demo's own backend
(``orchestra demo-backend``, :mod:`gateway.fakes.demo_backend`) on ``--port``, which holds the
app's ``orc_`` token server-side and mints short-lived session tokens for the page; the page
calls the gateway (on a free port) cross-origin with those. The browser never sees the app token.

Everything lives in a temporary ORCHESTRA_HOME that is deleted on exit; Ctrl+C stops it all.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from cli import listener, output
from cli.errors import fail
from cli.secrets_input import read_secret
from gateway.core.errors import ConfigurationError

_FRONTEND = Path(__file__).resolve().parent.parent / "frontend"
_BUILT_UI = _FRONTEND / "dist" / "demo" / "browser"
#: Said on the page and in the terminal: a newcomer must not take the fake's answers for a bug.
DEMO_NOTICE = (
    "Demo model: the answers come from Orchestra's bundled stand-in for OpenAI, not from a "
    "real model. Point an app at OpenAI (see the README) for real answers."
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _orchestra(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


def _wait_for(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            fail(ConfigurationError(f"The {what} exited before it was ready (see above)."))
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    fail(ConfigurationError(f"The {what} did not start within 30 s."))


def _ensure_ui(ui: Path | None) -> Path:
    if ui is not None:
        if not (ui / "index.html").is_file():
            fail(ConfigurationError(f"--ui {ui}: no index.html there."))
        return ui
    if (_BUILT_UI / "index.html").is_file():
        return _BUILT_UI
    npm = shutil.which("npm")
    if npm is None or not (_FRONTEND / "package.json").is_file():
        fail(
            ConfigurationError(
                "The demo UI is not built and Node.js/npm is not available to build it. "
                f"Install Node.js 20+, then run: cd {_FRONTEND} && npm ci && npm run build"
            )
        )
    output.print_info("Building the demo UI (once; about a minute)...")
    if not (_FRONTEND / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--loglevel=error"], cwd=_FRONTEND, check=True)
    subprocess.run([npm, "run", "build"], cwd=_FRONTEND, check=True)
    return _BUILT_UI


def demo(
    port: Annotated[
        int, typer.Option("--port", help="Port of the demo page (the URL to open).")
    ] = 8000,
    token_ms: Annotated[
        float, typer.Option("--token-ms", min=0, help="Delay between streamed tokens.")
    ] = 40.0,
    ui: Annotated[Path | None, typer.Option("--ui", help="A built demo UI to serve.")] = None,
) -> None:
    """Start the fake OpenAI, the gateway and the demo app; print the URL to open."""
    try:  # before the UI build and the children: a busy port is one error, at once
        listener.probe("127.0.0.1", port)
    except ConfigurationError as exc:
        fail(exc)
    built = _ensure_ui(ui)
    # SIGTERM (e.g. from a supervisor) stops the demo like Ctrl+C: children are cleaned up.
    signal.signal(signal.SIGTERM, _interrupt)
    home = Path(tempfile.mkdtemp(prefix="orchestra-demo-"))
    env = {**_clean_env(), "ORCHESTRA_HOME": str(home / "home"), "ORCHESTRA_LOG_LEVEL": "WARNING"}
    fake_port, gateway_port = _free_port(), _free_port()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run(_orchestra("init"), env=env, check=True, capture_output=True)
        fake = subprocess.Popen(
            _orchestra(
                "fake-openai",
                *("--port", str(fake_port), "--token-ms", str(token_ms)),
                *("--answers", "readable"),  # Markdown the demo's renderer shows off
            ),
            env=env,
            stdout=subprocess.DEVNULL,
        )
        processes.append(fake)
        _wait_for(f"http://127.0.0.1:{fake_port}/_fake/health", fake, "OpenAI fake")
        origin = f"http://127.0.0.1:{port}"
        # The page (served by the demo backend) calls the gateway cross-origin: the app lists
        # the page's origins, and the gateway's CORS rule lets exactly those in.
        added = subprocess.run(
            _orchestra(
                "apps",
                "add",
                "demo",
                "--origin",
                origin,
                "--origin",
                f"http://localhost:{port}",
                "--base-url",
                f"http://127.0.0.1:{fake_port}/v1",
                # The chat's thread: the model sees the history, and a reload shows it again.
                "--workflow",
                "conversation",
                "--openai-key-stdin",
                "--json",
            ),
            env=env,
            input=b"sk-demo\n",
            check=True,
            capture_output=True,
        )
        token = json.loads(added.stdout)["token"]
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        gateway = subprocess.Popen(
            _orchestra("serve", "--port", str(gateway_port)),
            env=env,
            stdout=subprocess.DEVNULL,
        )
        processes.append(gateway)
        _wait_for(f"{gateway_url}/status", gateway, "gateway")
        backend = start_backend(
            env=env, port=port, gateway_url=gateway_url, ui=built, app_token=token
        )
        processes.append(backend)
        _wait_for(f"{origin}/config.json", backend, "demo backend")
        output.print_info(f"Orchestra demo: {origin}/")
        output.print_info(DEMO_NOTICE)
        output.print_info("Press Ctrl+C to stop.")
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        fail(ConfigurationError("A demo process stopped unexpectedly."))
    except KeyboardInterrupt:
        output.print_info("Stopping the demo.")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(home, ignore_errors=True)


def start_backend(
    *,
    env: dict[str, str],
    port: int,
    gateway_url: str,
    ui: Path,
    app_token: str,
    session_ttl_s: int = 900,
) -> subprocess.Popen[bytes]:
    """``orchestra demo-backend`` as a child; the app token goes through its stdin, not argv."""
    backend = subprocess.Popen(
        _orchestra(
            "demo-backend",
            "--port",
            str(port),
            "--gateway",
            gateway_url,
            "--ui",
            str(ui),
            "--session-ttl-s",
            str(session_ttl_s),
            "--notice",
            DEMO_NOTICE,
        ),
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    assert backend.stdin is not None
    backend.stdin.write(f"{app_token}\n".encode())
    backend.stdin.close()
    return backend


def demo_backend(
    gateway: Annotated[
        str, typer.Option("--gateway", help="The gateway's URL, as the browser reaches it.")
    ],
    ui: Annotated[Path, typer.Option("--ui", help="The built demo UI to serve.")],
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to bind.")] = 8000,
    session_ttl_s: Annotated[
        int, typer.Option("--session-ttl-s", min=1, help="Lifetime of minted sessions.")
    ] = 900,
    notice: Annotated[str | None, typer.Option("--notice", help="Shown on the page.")] = None,
) -> None:
    """The demo app's own backend: serves the UI, mints sessions with the app token (stdin)."""
    from gateway.fakes.demo_backend import DemoBackendConfig, serve

    if not (ui / "index.html").is_file():
        fail(ConfigurationError(f"--ui {ui}: no index.html there."))
    app_token = read_secret("App token", from_stdin=True)
    if not app_token:
        fail(ConfigurationError("No app token on stdin (the demo backend mints sessions with it)."))
    config = DemoBackendConfig(
        ui_dir=ui,
        gateway_url=gateway,
        app_token=app_token,
        session_ttl_s=session_ttl_s,
        notice=notice,
    )
    try:
        sock = listener.bind(host, port)
    except ConfigurationError as exc:
        fail(exc)
    output.print_info(f"Demo backend on http://{host}:{port}/ (gateway {gateway})")
    serve(config, host=host, port=port, sock=sock)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _clean_env() -> dict[str, str]:
    from gateway.settings import environment_without_orchestra

    return environment_without_orchestra()
